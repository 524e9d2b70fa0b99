/**
 * A double-ended queue in constant time per operation. Array.prototype.shift
 * is in place in V8 only below about 16,000 elements and copies the whole
 * array past that (0.55 µs a shift at 10,000 queued, 95 µs at 50,000), so a
 * long line drained with it costs quadratic time: aedes's message queue in
 * a restart storm (broker/emitter-queue.ts, decision 127), the config
 * server's admission line (servers/config/admission.ts, decision 128).
 */

/** The four operations of a double-ended queue, as Array has them (what mqemitter 7.x uses of its queues). */
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
