/**
 * The embedded broker's message-emitter queue in constant time.
 *
 * mqemitter (aedes's message bus) queues what is beyond its concurrency in
 * two arrays and takes each next message with Array.prototype.shift. V8
 * shifts a short array in place, but one past about 16,000 elements is
 * copied whole at every shift (here: 0.55 µs a shift at 10,000 queued,
 * 95 µs at 50,000), so a backlog drains in quadratic time. A restart storm
 * of 10,000 devices queues that many (the power cut's wills, then every
 * device's online state, CONNECT and join): mqemitter's `released` was
 * 3.8% of `kagi up` in bench:storm's profile. A ring buffer with the same
 * four operations (push, shift, unshift, length) takes their place.
 */

/** What mqemitter (7.x) and emitter-depth.ts do with its queues. */
export interface Queue<T> {
  readonly length: number;
  push(x: T): number;
  shift(): T | undefined;
  unshift(x: T): number;
}

/** A double-ended queue on a ring buffer (capacity a power of two, doubling when full). */
export class Deque<T> implements Queue<T> {
  private buf: (T | undefined)[] = new Array<T | undefined>(16);
  private head = 0;
  private n = 0;

  get length(): number {
    return this.n;
  }

  push(x: T): number {
    if (this.n === this.buf.length) this.grow();
    this.buf[(this.head + this.n) & (this.buf.length - 1)] = x;
    return ++this.n;
  }

  shift(): T | undefined {
    if (this.n === 0) return undefined;
    const x = this.buf[this.head];
    this.buf[this.head] = undefined; // let it go
    this.head = (this.head + 1) & (this.buf.length - 1);
    this.n--;
    return x;
  }

  unshift(x: T): number {
    if (this.n === this.buf.length) this.grow();
    this.head = (this.head - 1) & (this.buf.length - 1);
    this.buf[this.head] = x;
    return ++this.n;
  }

  private grow(): void {
    const old = this.buf;
    const next = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.n; i++) next[i] = old[(this.head + i) & (old.length - 1)];
    this.buf = next;
    this.head = 0;
  }
}

/** The parts of mqemitter (7.x) this replaces. */
export interface QueuedEmitter {
  _messageQueue: Queue<unknown>;
  _messageCallbacks: Queue<unknown>;
}

/** Give a fresh emitter ring-buffer queues (before anything is queued: what is there is kept, in order). */
export function constantTimeQueues(mq: QueuedEmitter): void {
  for (const k of ['_messageQueue', '_messageCallbacks'] as const) {
    const q = new Deque<unknown>();
    for (let x = mq[k].shift(); x !== undefined; x = mq[k].shift()) q.push(x);
    mq[k] = q;
  }
}
