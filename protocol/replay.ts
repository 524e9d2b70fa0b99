/**
 * Sequence numbers of control messages (DESIGN §4): every (sender, receiver)
 * pair has a strictly increasing sequence. The receiver's ReplayGuard keeps
 * the highest accepted per sender; the sender's SendCounter never hands out
 * a number twice, across restarts too, because it persists a reserved upper
 * bound before using numbers below it (one write per `block` messages).
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

export class ReplayGuard {
  // Serialises check-and-set per sender: two copies of one message racing
  // through an async store must not both pass.
  private readonly serial = new KeyedSerial();

  constructor(private readonly store: NumberStore, private readonly prefix = 'rx:') {}

  /**
   * Record `seq` from `sender` if it is newer than anything seen, else throw
   * KagiError('replay'). Call only after the message authenticated, so a
   * forger cannot push the high-water mark up.
   */
  accept(sender: string, seq: number): Promise<void> {
    return this.serial.run(sender, async () => {
      const key = this.prefix + sender;
      const highest = await this.store.get(key);
      if (highest !== undefined && seq <= highest) {
        throw new KagiError('replay', `seq ${seq} from ${sender} not above ${highest}`);
      }
      await this.store.set(key, seq);
    });
  }
}

export class SendCounter {
  private next = new Map<string, number>();
  private reserved = new Map<string, number>();
  private readonly serial = new KeyedSerial();

  constructor(
    private readonly store: NumberStore,
    private readonly block = 64,
    private readonly prefix = 'tx:',
  ) {}

  /** The next sequence for messages to `peer` (starts at 1). */
  take(peer: string): Promise<number> {
    return this.serial.run(peer, async () => {
      let n = this.next.get(peer);
      let top = this.reserved.get(peer);
      if (n === undefined || top === undefined) {
        // After a restart, skip whatever the last run may have used.
        top = (await this.store.get(this.prefix + peer)) ?? 0;
        n = top + 1;
      }
      if (n > LIMITS.maxSeq) throw new KagiError('exhausted', `sequence to ${peer} exhausted`);
      if (n > top) {
        top = Math.min(n + this.block - 1, LIMITS.maxSeq);
        await this.store.set(this.prefix + peer, top);
      }
      this.next.set(peer, n + 1);
      this.reserved.set(peer, top);
      return n;
    });
  }
}
