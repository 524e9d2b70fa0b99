/**
 * broker/emitter-depth.ts on aedes's own emitter: a backlog of 20,000
 * messages that drains synchronously (what 10,000 wills at once did)
 * overflows the stack unbounded, and is delivered in full with the bound.
 */
import t from 'tap';
import { Aedes } from 'aedes';
import { boundEmitterDepth } from '../../broker/emitter-depth.js';
import { deadline } from '../helpers/deadline.js';

interface Mq {
  on(topic: string, fn: (m: unknown, done: () => void) => void): void;
  emit(m: { topic: string }, cb?: (e?: Error) => void): void;
  _do(message: unknown, callback: unknown): unknown;
}

const BACKLOG = 20_000;

/** Fill the emitter's concurrency with held deliveries, queue BACKLOG more, then let them all finish at once. */
async function drain(bound: boolean): Promise<{ delivered: number; error: unknown }> {
  const aedes = await Aedes.createBroker();
  const mq = (aedes as unknown as { mq: Mq }).mq;
  if (bound) boundEmitterDepth(mq);
  let hold = true;
  const held: (() => void)[] = [];
  let delivered = 0;
  mq.on('storm', (_m, done) => {
    delivered++;
    if (hold) held.push(done);
    else done(); // synchronous completion: the next queued message starts inside this one
  });
  for (let i = 0; i < 100 + BACKLOG; i++) mq.emit({ topic: 'storm' });
  hold = false;
  let error: unknown = null;
  try {
    for (const done of held.splice(0)) done();
  } catch (e) {
    error = e;
  }
  if (!error) {
    const until = Date.now() + deadline(10_000);
    while (delivered < 100 + BACKLOG && Date.now() < until) await new Promise((r) => setImmediate(r));
  }
  await new Promise<void>((r) => aedes.close(() => r()));
  return { delivered, error };
}

t.test('a synchronous backlog of 20,000 messages', async (t) => {
  const unbounded = await drain(false);
  t.match(unbounded.error, RangeError, 'unbounded, the emitter overflows the stack (the crash this guards against)');
  const bounded = await drain(true);
  t.equal(bounded.error, null, 'bounded, nothing throws');
  t.equal(bounded.delivered, 100 + BACKLOG, 'and every message is delivered');
});
