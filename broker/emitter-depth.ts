/**
 * A bound on the embedded broker's message-emitter recursion.
 *
 * aedes routes every message through mqemitter, which runs at most
 * `concurrency` (100) at a time and queues the rest; each finished message
 * starts the next one from inside its own completion. When deliveries
 * complete synchronously, a long queue is drained as one recursion, one
 * stack frame set per message: 10,000 devices losing power at once (10,000
 * wills) overflowed the stack and took `kagi up` down ("Maximum call stack
 * size exceeded" in mqemitter `_do`; bench:storm at N = 10,000; upstream:
 * mcollina/mqemitter#204, still open). Past MAX_DEPTH nested starts the
 * next one waits for setImmediate, which empties the stack; below it
 * nothing changes, so ordinary traffic pays nothing.
 */

/** Nested message starts allowed before the next is deferred (each is a few frames). */
export const MAX_DEPTH = 200;

interface Emitter {
  _do(message: unknown, callback: unknown): unknown;
}

export function boundEmitterDepth(mq: Emitter): void {
  const start = mq._do.bind(mq);
  let depth = 0;
  mq._do = (message, callback) => {
    if (depth >= MAX_DEPTH) {
      setImmediate(() => mq._do(message, callback));
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
