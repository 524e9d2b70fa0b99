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
import { Deque, type Queue } from '../protocol/deque.js';

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
