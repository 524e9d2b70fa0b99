/**
 * broker/emitter-queue.ts: the ring buffer against an array doing the same
 * operations, and on aedes's own emitter (with the depth bound, as the
 * embedded broker has both) a backlog past V8's in-place shift limit is
 * delivered whole and in the order it was emitted.
 */
import t from 'tap';
import { Aedes } from 'aedes';
import { Deque, constantTimeQueues, type QueuedEmitter } from '../../broker/emitter-queue.js';
import { boundEmitterDepth, type Emitter } from '../../broker/emitter-depth.js';
import { deadline } from '../helpers/deadline.js';

t.test('Deque does what an array does with push, shift and unshift', async (t) => {
  const d = new Deque<number>();
  const a: number[] = [];
  let seed = 11;
  const rand = (k: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % k);
  let wrong = 0;
  for (let i = 0; i < 200_000; i++) {
    const op = rand(7); // more pushes than shifts: it grows through several doublings, and empties now and then
    if (op < 3) {
      if (d.push(i) !== a.push(i)) wrong++;
    } else if (op < 4) {
      if (d.unshift(-i) !== a.unshift(-i)) wrong++;
    } else if (d.shift() !== a.shift()) wrong++;
    if (d.length !== a.length) wrong++;
  }
  t.equal(wrong, 0, '200,000 random operations: the same results and lengths');
  while (a.length) if (d.shift() !== a.shift()) wrong++;
  t.equal(wrong, 0, 'and the same contents to the end');
  t.equal(d.shift(), undefined, 'empty: undefined, as an array');
});

interface Mq extends Emitter, QueuedEmitter {
  on(topic: string, fn: (m: { topic: string; n: number }, done: () => void) => void): void;
  emit(m: { topic: string; n: number }): void;
}

t.test("aedes's emitter with both: a backlog of 60,000 drains whole, in order", async (t) => {
  const aedes = await Aedes.createBroker();
  t.teardown(() => new Promise<void>((r) => aedes.close(() => r())));
  const mq = (aedes as unknown as { mq: Mq }).mq;
  constantTimeQueues(mq);
  boundEmitterDepth(mq);
  t.ok(mq._messageQueue instanceof Deque && mq._messageCallbacks instanceof Deque, 'its queues are ring buffers');
  let hold = true;
  const held: (() => void)[] = [];
  const order: number[] = [];
  mq.on('storm', (m, done) => {
    order.push(m.n);
    if (hold) held.push(done);
    else done();
  });
  const N = 60_000;
  for (let n = 0; n < N; n++) mq.emit({ topic: 'storm', n });
  t.equal(mq._messageQueue.length, N - held.length, 'beyond the concurrency, every message queued');
  hold = false;
  for (const done of held.splice(0)) done();
  const until = Date.now() + deadline(20_000);
  while (order.length < N && Date.now() < until) await new Promise((r) => setImmediate(r));
  t.equal(order.length, N, 'every message delivered');
  t.equal(order.findIndex((n, i) => n !== i), -1, 'in the order emitted');
  t.equal(mq._messageQueue.length, 0, 'nothing left queued');
});
