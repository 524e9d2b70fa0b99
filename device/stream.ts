/**
 * Ordered, reliable byte streams over sealed VPN frames (the data plane of
 * `--listen` / `--target`). MQTT QoS 1 already delivers in order per topic,
 * but a reconnect with a clean session can lose frames, so each stream is a
 * small go-back-N: every item carries a sequence number, the receiver
 * delivers in order and acknowledges cumulatively, the sender retransmits
 * what is unacknowledged after `rtoMs`.
 *
 * While the broker is away (or our keys are), sends fail: an item stays
 * queued and is retransmitted like a lost one, and the window (64 items)
 * pushes back on the writer, so a stream holds through a short outage. An
 * item unacknowledged for `holdMs` (default 30 s) aborts the stream: the
 * local side sees reset(), and an RST goes out if it can. Nothing here
 * rejects at its caller for a failed send.
 *
 * Stream items (CBOR arrays inside one VPN frame payload):
 *   [sid, seq, OPEN]          seq 0: open a stream to the peer's target
 *   [sid, seq, DATA, bytes]
 *   [sid, seq, FIN]           orderly close after everything before it
 *   [sid, -1,  ACK, upTo]     cumulative acknowledgement (not sequenced)
 *   [sid, -1,  RST]           abort at once (not sequenced)
 * Plain TypeScript over injected send and timers: no sockets here.
 */
import { decodeStrict, encode } from '../protocol/cbor.js';
import { KagiError } from '../protocol/errors.js';
import { detach, type DetachLog } from './detach.js';

const OPEN = 1, DATA = 2, FIN = 3, ACK = 4, RST = 5;
export const CHUNK = 16 * 1024;
const WINDOW = 64;
/** How long an item may stay unacknowledged before the stream is aborted (ms). */
export const DEFAULT_HOLD_MS = 30_000;

export interface StreamEvents {
  data(bytes: Uint8Array): void;
  end(): void;
  reset(): void;
}

interface Item {
  seq: number;
  payload: Uint8Array;
  sentAt: number;
  /** First queued (ms): the hold deadline counts from here. */
  queuedAt: number;
}

export class Stream {
  private nextSend = 0;
  private readonly unacked: Item[] = [];
  private nextRecv = 0;
  private readonly early = new Map<number, unknown[]>();
  private closed = false;
  events: StreamEvents = { data() {}, end() {}, reset() {} };
  private drainWaiters: (() => void)[] = [];

  constructor(readonly mux: StreamMux, readonly peer: string, readonly sid: number) {}

  /**
   * Queue an item in the reliable sequence and send it. A failed send is
   * not an error here: the item is queued, and tick() retransmits it.
   */
  private async sendItem(kind: number, extra: unknown[] = []): Promise<void> {
    while (this.unacked.length >= WINDOW && !this.closed) await new Promise<void>((r) => this.drainWaiters.push(r));
    if (this.closed) return;
    const seq = this.nextSend++;
    const payload = encode([this.sid, seq, kind, ...extra]);
    const now = this.mux.now();
    this.unacked.push({ seq, payload, sentAt: now, queuedAt: now });
    try {
      await this.mux.sendRaw(this.peer, payload);
    } catch (e) {
      this.mux.log('debug', `stream ${this.peer}/${this.sid}: send of ${seq} failed, will retransmit: ${(e as Error).message}`);
    }
  }

  open(): Promise<void> {
    return this.sendItem(OPEN);
  }

  async write(bytes: Uint8Array): Promise<void> {
    for (let o = 0; o < bytes.length; o += CHUNK) await this.sendItem(DATA, [bytes.subarray(o, o + CHUNK)]);
  }

  end(): Promise<void> {
    return this.sendItem(FIN);
  }

  /** Abort: forget the stream and tell the peer if we can (best effort). */
  reset(): void {
    if (this.closed) return;
    this.finish();
    detach(this.mux.sendRaw(this.peer, encode([this.sid, -1, RST])), 'stream RST', this.mux.log, 'debug', `${this.peer}/${this.sid}`);
  }

  /**
   * Abort without a word to the peer (our keys are gone, or it held too
   * long): the local side sees reset().
   */
  abort(why: string): void {
    if (this.closed) return;
    this.mux.log('info', `stream ${this.peer}/${this.sid} aborted: ${why}`);
    this.finish();
    this.events.reset();
  }

  private finish(): void {
    this.closed = true;
    this.mux.forget(this);
    for (const w of this.drainWaiters.splice(0)) w();
  }

  /**
   * Retransmit everything unacknowledged once the oldest is overdue; past
   * the hold deadline, abort (and try an RST: the peer may be reachable).
   */
  tick(now: number): void {
    const oldest = this.unacked[0];
    if (!oldest || now - oldest.sentAt < this.mux.rtoMs) return;
    if (now - oldest.queuedAt >= this.mux.holdMs) {
      detach(this.mux.sendRaw(this.peer, encode([this.sid, -1, RST])), 'stream RST', this.mux.log, 'debug', `${this.peer}/${this.sid}`);
      return this.abort(`unacknowledged for ${now - oldest.queuedAt} ms (hold ${this.mux.holdMs} ms)`);
    }
    for (const it of this.unacked) {
      it.sentAt = now;
      detach(this.mux.sendRaw(this.peer, it.payload), 'stream retransmit', this.mux.log, 'debug', `${this.peer}/${this.sid}`);
    }
  }

  /** One item from the peer. */
  receive(item: unknown[]): void {
    const [, seq, kind] = item as [number, number, number];
    if (kind === ACK) {
      const upTo = item[3] as number;
      while (this.unacked.length && this.unacked[0]!.seq <= upTo) this.unacked.shift();
      for (const w of this.drainWaiters.splice(0)) w();
      if (this.closed === false && this.finSent() && this.unacked.length === 0 && this.peerFinished) this.finish();
      return;
    }
    if (kind === RST) {
      this.finish();
      this.events.reset();
      return;
    }
    if (seq < this.nextRecv) return this.ack(); // duplicate: re-acknowledge
    this.early.set(seq, item);
    while (this.early.has(this.nextRecv)) {
      const it = this.early.get(this.nextRecv)!;
      this.early.delete(this.nextRecv++);
      const k = it[2] as number;
      if (k === DATA) this.events.data(it[3] as Uint8Array);
      else if (k === FIN) {
        this.peerFinished = true;
        this.events.end();
      }
    }
    this.ack();
    if (this.peerFinished && this.finSent() && this.unacked.length === 0) this.finish();
  }

  private peerFinished = false;

  private finSent(): boolean {
    return this.nextSend > 0 && this.sentFin;
  }

  private sentFin = false;

  /** FIN marks our side done (queued after our data); the stream ends when both sides are. */
  close(): void {
    if (this.sentFin || this.closed) return;
    this.sentFin = true;
    detach(this.end(), 'stream FIN', this.mux.log, 'debug', `${this.peer}/${this.sid}`);
  }

  /** Not sequenced: a lost ACK is made good by the next one, or by a retransmit's re-ACK. */
  private ack(): void {
    detach(this.mux.sendRaw(this.peer, encode([this.sid, -1, ACK, this.nextRecv - 1])), 'stream ACK', this.mux.log, 'debug', `${this.peer}/${this.sid}`);
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

export interface MuxOptions {
  send(peer: string, payload: Uint8Array): Promise<void>;
  /** A peer opened a stream to us; attach its events. */
  accept(s: Stream): void;
  now(): number;
  rtoMs?: number;
  /** Abort a stream whose oldest item is unacknowledged this long (ms). */
  holdMs?: number;
  random32(): number;
  log?: DetachLog;
}

export class StreamMux {
  private readonly streams = new Map<string, Stream>();
  readonly rtoMs: number;
  readonly holdMs: number;
  readonly log: DetachLog;

  constructor(private readonly o: MuxOptions) {
    this.rtoMs = o.rtoMs ?? 1000;
    this.holdMs = o.holdMs ?? DEFAULT_HOLD_MS;
    this.log = o.log ?? (() => {});
  }

  now(): number {
    return this.o.now();
  }

  sendRaw(peer: string, payload: Uint8Array): Promise<void> {
    return this.o.send(peer, payload);
  }

  forget(s: Stream): void {
    this.streams.delete(`${s.peer}/${s.sid}`);
  }

  get size(): number {
    return this.streams.size;
  }

  /** Open a stream to `peer`; the OPEN is queued at once (attach events before the first tick). */
  open(peer: string): Stream {
    const s = new Stream(this, peer, this.o.random32());
    this.streams.set(`${peer}/${s.sid}`, s);
    detach(s.open(), 'stream OPEN', this.log, 'debug', `${peer}/${s.sid}`);
    return s;
  }

  /** End every stream at once, locally (the VPN's keys are gone: nothing can reach the peer). */
  abortAll(why: string): void {
    for (const s of [...this.streams.values()]) s.abort(why);
  }

  /** A decrypted frame payload from `peer`; bad items are dropped. */
  receive(peer: string, payload: Uint8Array): void {
    let item: unknown[];
    try {
      const v = decodeStrict(payload, 64 * 1024);
      if (!Array.isArray(v) || v.length < 3 || typeof v[0] !== 'number' || typeof v[1] !== 'number' || typeof v[2] !== 'number') return;
      item = v;
    } catch (e) {
      if (e instanceof KagiError) return;
      throw e;
    }
    const key = `${peer}/${item[0]}`;
    let s = this.streams.get(key);
    if (!s) {
      if (item[1] !== 0 || item[2] !== OPEN) return; // not an open: stale or forged
      s = new Stream(this, peer, item[0] as number);
      this.streams.set(key, s);
      this.o.accept(s);
    }
    s.receive(item);
  }

  tick(): void {
    const now = this.o.now();
    for (const s of this.streams.values()) s.tick(now);
  }
}
