/**
 * Sequence numbers of control messages (DESIGN §4): every (sender, receiver)
 * pair has an increasing sequence. The sender's SendCounter never hands out
 * a number twice, across restarts too, because it persists a reserved upper
 * bound before using numbers below it (one write per `block` messages); on a
 * store shared by several instances of a service the reservation is one
 * atomic add, so instances never share a number (channel nonces are seqs).
 *
 * The receiver's ReplayGuard accepts each seq at most once, within a window
 * of SEQ_WINDOW below the highest seen: instances of one service reserve
 * numbers in one order and may publish them in another, so a strictly
 * increasing check would drop good messages. A store that can claim
 * atomically (servers: several instances, one table) decides for all of
 * them; otherwise the window lives in memory and only its top persists,
 * and after a restart everything at or below that top counts as seen.
 *
 * Eras: a sender that lost its counters (a board with storage `none`, a
 * wiped state file, a reflash) would start at seq 1 again and meet the
 * receiver's window. So a SendCounter that finds no stored era for a peer
 * draws a random non-zero 32-bit one and persists it with the counter;
 * sealed requests and CONNECT passwords carry it, authenticated, and the
 * receiver keeps one window per (sender, era). A new era starts an empty
 * window (the reset sender is taken from its first message), while a
 * replay of an earlier era's message still meets that era's window.
 * Counters on a store with atomic `add` (services shared by several
 * instances) are shared and never reset: their era is 0.
 */
import { KagiError } from './errors.js';
import { LIMITS } from './limits.js';
import type { NumberStore } from './store.js';

/**
 * One promise chain per key: operations on one key run in order, those on
 * different keys concurrently (so a store can commit many in one batch).
 */
export class KeyedSerial {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.tails.get(key) ?? Promise.resolve()).then(fn);
    const tail = run.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => this.tails.get(key) === tail && this.tails.delete(key));
    return run;
  }
}

/** How far below the highest seq a late one is still accepted (once). */
export const SEQ_WINDOW = 32;

/**
 * The window of a store shared by several instances (PostgreSQL): there
 * several senders share one sequence and several receivers claim from one
 * window, each with its own backlog, so seqs are claimed far out of order
 * under load (the 10,000-terminal bench saw more than 32 with 3 instances
 * on 2 cores, and a dropped request costs a 60 s retry).
 */
export const SHARED_SEQ_WINDOW = 1024;

/**
 * Seqs seen from one sender: the highest, and a bitmap of the SEQ_WINDOW
 * seqs at and below it (bit i = top - i seen). Plain data, so stores can
 * keep it in a row.
 */
export interface SeqWindow {
  top: number;
  bits: number;
}

/** Everything at or below `top` counts as seen (a window restored from its top alone). */
export function windowAt(top: number): SeqWindow {
  return { top, bits: 0xffff_ffff };
}

/**
 * The window after accepting `seq`, or null if `seq` was seen or is too old.
 * Seqs are public, so branching on them leaks nothing.
 */
export function slideWindow(w: SeqWindow | undefined, seq: number): SeqWindow | null {
  if (!w) return { top: seq, bits: 1 };
  if (seq > w.top) {
    const d = seq - w.top;
    // JS shifts count mod 32: a jump of the whole window clears it.
    return { top: seq, bits: ((d >= SEQ_WINDOW ? 0 : w.bits << d) | 1) >>> 0 };
  }
  const back = w.top - seq;
  if (back >= SEQ_WINDOW) return null;
  const bit = (1 << back) >>> 0;
  if ((w.bits & bit) !== 0) return null;
  return { top: w.top, bits: (w.bits | bit) >>> 0 };
}

/** The window key of `sender` in `era`: era 0 keeps the pre-era key, others end in `~ERAHEX`. */
export function eraKey(base: string, era: number): string {
  return era === 0 ? base : `${base}~${era.toString(16).padStart(8, '0')}`;
}

/** A random non-zero uint32 from `random` (eras are public; the loop only skips zero). */
export function drawEra(random: (n: number) => Uint8Array): number {
  for (;;) {
    const b = random(4);
    const era = ((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]!;
    if (era !== 0) return era;
  }
}

export class ReplayGuard {
  // Serialises check-and-set per sender: two copies of one message racing
  // through an async store must not both pass.
  private readonly serial = new KeyedSerial();
  private readonly windows = new Map<string, SeqWindow>();
  /** Channel windows without a claiming store: the current channel's only, by sender. */
  private readonly channelWindows = new Map<string, { tag: string; w: SeqWindow }>();

  constructor(private readonly store: NumberStore, private readonly prefix = 'rx:') {}

  /**
   * Record `seq` from `sender` in its `era` if it was not seen and is
   * within that era's window, else throw KagiError('replay'). Call only
   * after the message (and so its era) authenticated, so a forger cannot
   * move a window.
   */
  accept(sender: string, seq: number, era = 0): Promise<void> {
    const key = eraKey(this.prefix + sender, era);
    const refuse = () => new KagiError('replay', `seq ${seq} from ${sender} (era ${era}) seen or too old`);
    if (this.store.claim) {
      return this.store.claim(key, seq).then((ok) => {
        if (!ok) throw refuse();
      });
    }
    return this.serial.run(key, async () => {
      let w = this.windows.get(key);
      if (!w) {
        const top = await this.store.get(key);
        if (top !== undefined) w = windowAt(top);
      }
      const next = slideWindow(w, seq);
      if (!next) throw refuse();
      if (next.top !== w?.top) await this.store.set(key, next.top);
      this.windows.set(key, next);
    });
  }

  /**
   * As accept, for a channel message: the window belongs to the channel
   * named `tag` (channel.ts channelTag), so a renewed channel starts a new
   * one and a sender that lost its counters (and got a new channel) is
   * taken from seq 1. On a claiming store (services) the window is a row of
   * its own; otherwise it lives in memory with the channel it guards (a
   * device's channels do not survive a restart either).
   */
  acceptOnChannel(sender: string, tag: string, seq: number): Promise<void> {
    const refuse = () => new KagiError('replay', `seq ${seq} from ${sender} on its channel seen or too old`);
    if (this.store.claim) {
      return this.store.claim(`${this.prefix}${sender}#${tag}`, seq).then((ok) => {
        if (!ok) throw refuse();
      });
    }
    return this.serial.run(sender, async () => {
      const cur = this.channelWindows.get(sender);
      const next = slideWindow(cur?.tag === tag ? cur.w : undefined, seq);
      if (!next) throw refuse();
      this.channelWindows.set(sender, { tag, w: next });
    });
  }
}

/** Where a peer's sequence stands: the next seq, the top of the reserved block, the era. */
interface PeerCount {
  next: number;
  reserved: number;
  era: number;
}

export class SendCounter {
  // One entry per peer (a service holds one for every device it talks to):
  // one map of small records rather than three maps, for memory per idle
  // device (decision 99).
  private readonly peers = new Map<string, PeerCount>();
  private readonly serial = new KeyedSerial();

  /**
   * `random` (the platform's checked source) draws a new era for a peer
   * whose store holds none; without it (tests of the counter alone) the
   * era is 0.
   */
  constructor(
    private readonly store: NumberStore,
    private readonly block = 64,
    private readonly prefix = 'tx:',
    private readonly random?: (n: number) => Uint8Array,
  ) {}

  /** The next sequence for messages to `peer` (starts at 1). */
  async take(peer: string): Promise<number> {
    return (await this.takeWithEra(peer)).seq;
  }

  /** The next sequence for messages to `peer`, and the era it counts in (sealed requests and CONNECT carry it). */
  takeWithEra(peer: string): Promise<{ seq: number; era: number }> {
    return this.serial.run(peer, async () => {
      const held = await this.hold(peer);
      const seq = held.next++;
      return { seq, era: held.era };
    });
  }

  /**
   * Have a block for `peer` on hand before the first message needs one:
   * a device that reserves for all its peers at start, in one turn, pays
   * one write of its store for all of them instead of one each, in turn,
   * as it gets to each (decision 120). Takes nothing.
   */
  reserve(peer: string): Promise<void> {
    return this.serial.run(peer, async () => void (await this.hold(peer)));
  }

  /** `peer`'s count with at least one number reserved and not taken (in the serial of `peer`). */
  private async hold(peer: string): Promise<PeerCount> {
    const held = this.peers.get(peer);
    if (held && held.next <= held.reserved) return held; // the common case: nothing to write
    let n = held?.next;
    let top = held?.reserved;
    let era = held?.era;
    let newEra = false;
    if (n === undefined || top === undefined || era === undefined) {
      // After a restart, skip whatever the last run may have used (an
      // atomic add below does that by itself).
      top = this.store.add ? 0 : ((await this.store.get(this.prefix + peer)) ?? 0);
      n = top + 1;
      era = this.store.add || !this.random ? 0 : await this.store.get(`era:${this.prefix}${peer}`);
      // No era stored: a fresh or wiped store, or one that keeps nothing.
      if (era === undefined) (era = drawEra(this.random!), (newEra = true));
    }
    if (n > LIMITS.maxSeq) throw new KagiError('exhausted', `sequence to ${peer} exhausted`);
    if (n > top) {
      if (this.store.add) {
        // Shared by several instances: the block is whatever the add returns.
        top = await this.store.add(this.prefix + peer, this.block);
        n = top - this.block + 1;
        if (top > LIMITS.maxSeq) throw new KagiError('exhausted', `sequence to ${peer} exhausted`);
      } else {
        top = Math.min(n + this.block - 1, LIMITS.maxSeq);
        // A new peer's first block and its era in one write where the store
        // can (a service meeting a device: one commit, not two in turn).
        if (newEra && this.store.setMany) {
          await this.store.setMany([
            [this.prefix + peer, top],
            [`era:${this.prefix}${peer}`, era],
          ]);
          newEra = false;
        } else await this.store.set(this.prefix + peer, top);
      }
    }
    // After the counter: a crash between the two leaves a counter
    // without an era, and the next run draws another era (harmless); the
    // other order could leave an era whose seqs start again at 1.
    if (newEra) await this.store.set(`era:${this.prefix}${peer}`, era);
    const count = { next: n, reserved: top, era };
    if (held) Object.assign(held, count);
    else this.peers.set(peer, count);
    return held ?? count;
  }
}
