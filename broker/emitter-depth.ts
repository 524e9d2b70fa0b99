/**
 * A bound on the embedded broker's message-emitter recursion.
 *
 * aedes routes every message through mqemitter, which runs at most
 * `concurrency` (100) at a time and queues the rest; each finished message
 * starts the next one from inside its own completion. When deliveries
 * complete synchronously (a message nobody subscribes to), a long queue is
 * drained as one recursion, one stack frame set per message: 10,000
 * devices losing power at once (10,000 wills) overflowed the stack and
 * took `kagi up` down ("Maximum call stack size exceeded" in mqemitter
 * `_do`; bench:storm at N = 10,000; upstream: mcollina/mqemitter#204,
 * still open). Past MAX_DEPTH nested starts the next message goes back to
 * the head of the queue, holding the slot it was given, and is started by
 * the emitter's own `released` on setImmediate, which empties the stack.
 * Below the bound nothing changes, so ordinary traffic pays nothing.
 *
 * The message keeps its place: an earlier version started it a turn later
 * with its slot counted free, so messages emitted meanwhile overtook the
 * whole queue. Subscribers then got messages out of order (MQTT keeps
 * each publisher's order), and with aedes's duplicate filter overtaken
 * messages were dropped (duplicate-filter.ts).
 */

import type { Queue } from '../protocol/deque.js';

/** Nested message starts allowed before the next is deferred (each is a few frames). */
export const MAX_DEPTH = 200;

/** The parts of mqemitter (7.x) this touches. */
export interface Emitter {
  _do(message: unknown, callback: unknown): unknown;
  /** Frees a slot and starts the queue's head (mqemitter's `released`, bound to it). */
  _released(): void;
  _messageQueue: Queue<unknown>;
  _messageCallbacks: Queue<unknown>;
  current: number;
}

export function boundEmitterDepth(mq: Emitter): void {
  const start = mq._do.bind(mq);
  let depth = 0;
  mq._do = (message, callback) => {
    if (depth >= MAX_DEPTH) {
      mq._messageQueue.unshift(message);
      mq._messageCallbacks.unshift(callback);
      mq.current++; // the slot stays taken: whatever is emitted meanwhile queues behind
      setImmediate(mq._released);
      return mq;
    }
    depth++;
    try {
      return start(message, callback);
    } finally {
      depth--;
    }
  };
}
