/**
 * broker/emitter-depth.ts on aedes's own emitter: a backlog of 20,000
 * messages that drains synchronously (what 10,000 wills at once did)
 * overflows the stack unbounded, and is delivered in full with the bound,
 * in the order it was emitted, even with more emitted while it drains.
 * The same with the embedded broker's ring-buffer queues
 * (broker/emitter-queue.ts) and a backlog of 60,000, past the length V8
 * shifts an array in place.
 */
import t from 'tap';
import { Aedes } from 'aedes';
import { boundEmitterDepth, type Emitter } from '../../broker/emitter-depth.js';
import { constantTimeQueues } from '../../broker/emitter-queue.js';
import { Deque } from '../../protocol/deque.js';
import { deadline } from '../helpers/deadline.js';

interface Mq extends Emitter {
  on(topic: string, fn: (m: { topic: string; n: number }, done: () => void) => void): void;
  emit(m: { topic: string; n: number }, cb?: (e?: Error) => void): void;
}

const BACKLOG = 20_000;
/** Emitted one turn after the backlog starts draining. */
const LATE = 50;

/** Fill the emitter's concurrency with held deliveries, queue BACKLOG more, then let them all finish at once. */
async function drain(bound: boolean, o: { ring?: boolean; backlog?: number } = {}): Promise<{ order: number[]; error: unknown; current: number; queued: number; ring: boolean }> {
  const aedes = await Aedes.createBroker();
  const mq = (aedes as unknown as { mq: Mq }).mq;
  if (o.ring) constantTimeQueues(mq);
  if (bound) boundEmitterDepth(mq);
  let hold = true;
  const held: (() => void)[] = [];
  const order: number[] = [];
  mq.on('storm', (m, done) => {
    order.push(m.n);
    if (hold) held.push(done);
    else done(); // synchronous completion: the next queued message starts inside this one
  });
  let n = 0;
  for (; n < 100 + (o.backlog ?? BACKLOG); n++) mq.emit({ topic: 'storm', n });
  hold = false;
  let error: unknown = null;
  try {
    for (const done of held.splice(0)) done();
  } catch (e) {
    error = e;
  }
  if (!error) {
    await new Promise((r) => setImmediate(r));
    for (const end = n + LATE; n < end; n++) mq.emit({ topic: 'storm', n });
    const until = Date.now() + deadline(10_000);
    while (order.length < n && Date.now() < until) await new Promise((r) => setImmediate(r));
  }
  const { current, _messageQueue } = mq;
  await new Promise<void>((r) => aedes.close(() => r()));
  return { order, error, current, queued: _messageQueue.length, ring: _messageQueue instanceof Deque };
}

t.test('a synchronous backlog of 20,000 messages', async (t) => {
  const unbounded = await drain(false);
  t.match(unbounded.error, RangeError, 'unbounded, the emitter overflows the stack (the crash this guards against)');
  const bounded = await drain(true);
  t.equal(bounded.error, null, 'bounded, nothing throws');
  t.equal(bounded.order.length, 100 + BACKLOG + LATE, 'every message is delivered');
  const outOfOrder = bounded.order.findIndex((n, i) => i > 0 && n < bounded.order[i - 1]!);
  t.equal(bounded.queued, 0, 'nothing is left in the queue');
  t.equal(bounded.current, 0, "and the emitter's count of messages in flight is back at 0 (mqemitter's \"leak detected\" is this count out of step)");
  t.equal(outOfOrder, -1, `in the order emitted: those emitted while the backlog drains queue behind it${outOfOrder < 0 ? '' : ` (${bounded.order[outOfOrder]} came after ${bounded.order[outOfOrder - 1]})`}`);
});

t.test('with ring-buffer queues, a backlog of 60,000', async (t) => {
  const r = await drain(true, { ring: true, backlog: 60_000 });
  t.ok(r.ring, 'the emitter queues on ring buffers');
  t.equal(r.error, null, 'nothing throws');
  t.equal(r.order.length, 100 + 60_000 + LATE, 'every message is delivered');
  t.equal(r.order.findIndex((n, i) => n !== i), -1, 'in the order emitted');
  t.equal(r.queued, 0, 'nothing left queued');
});
