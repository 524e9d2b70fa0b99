/**
 * A connection to the embedded broker from inside its own process: two
 * Duplex streams, each one's writes the other's reads, for the services
 * that `kagi up` runs beside the broker (decision 132). They still speak
 * MQTT to it (CONNECT with their counter password, the same ACL and
 * subscriptions), but no byte goes through a socket: every message between
 * a device and a service crossed the loopback twice more than it needed
 * to, a writev and a read on each side, about half of kagi up's socket
 * writes in a restart storm.
 *
 * Bytes are handed over on a later tick, never inside the writer's call, as
 * a socket would: aedes and MQTT.js both expect a write to return before
 * the other side acts on it. A reader that stops reading holds back the
 * writer's callbacks (the usual backpressure of a stream), and either end
 * ending or being destroyed ends the other.
 */
import { Duplex } from 'node:stream';

class End extends Duplex {
  other!: End;
  /** The callback of a write the other end could not take yet, called when it reads again. */
  private waiting: (() => void) | null = null;

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    this.hand([chunk], done);
  }

  override _writev(chunks: { chunk: Buffer }[], done: (e?: Error | null) => void): void {
    this.hand(chunks.map((c) => c.chunk), done);
  }

  private hand(chunks: Buffer[], done: (e?: Error | null) => void): void {
    const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    process.nextTick(() => {
      if (this.other.destroyed) return done(new Error('in-process connection closed'));
      if (this.other.push(bytes)) done();
      else this.other.waiting = () => done();
    });
  }

  override _read(): void {
    const w = this.waiting;
    this.waiting = null;
    w?.();
  }

  override _final(done: (e?: Error | null) => void): void {
    process.nextTick(() => {
      if (!this.other.destroyed) this.other.push(null);
      done();
    });
  }

  override _destroy(e: Error | null, done: (e?: Error | null) => void): void {
    const w = this.waiting;
    this.waiting = null;
    w?.();
    if (!this.other.destroyed) this.other.destroy();
    done(e);
  }
}

/** Two connected ends: what one writes, the other reads. */
export function duplexPair(): [Duplex, Duplex] {
  const a = new End();
  const b = new End();
  a.other = b;
  b.other = a;
  return [a, b];
}
