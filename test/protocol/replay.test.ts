/**
 * Replay protection: the VPN frame window against a simple model, and the
 * control-message guard and send counter through their storage.
 */
import t from 'tap';
import fc from 'fast-check';
import { ReplayWindow } from '../../protocol/replay-window.js';
import { ReplayGuard, SendCounter } from '../../protocol/replay.js';
import { MemoryNumberStore } from '../../protocol/store.js';

/** The model: remember everything; accept iff unseen and above top - size. */
class ModelWindow {
  private seen = new Set<number>();
  private top = -1;
  constructor(private readonly size: number) {}
  accept(c: number): boolean {
    if (this.seen.has(c) || c <= this.top - this.size) return false;
    this.seen.add(c);
    this.top = Math.max(this.top, c);
    return true;
  }
}

function run(size: number, counters: number[]): boolean {
  const w = new ReplayWindow(size);
  const m = new ModelWindow(size);
  for (const c of counters) {
    const ok = w.check(c);
    if (ok) w.commit(c);
    if (ok !== m.accept(c)) return false;
  }
  return true;
}

t.test('window matches the model', async (t) => {
  t.equal(new ReplayWindow().size, 2048, 'default window is 2,048 frames');
  // Counters near a moving top: mostly fresh, some repeats, some far jumps.
  const stream = fc.array(fc.oneof(fc.integer({ min: 0, max: 6000 }), fc.integer({ min: 0, max: 100 })), { maxLength: 400 });
  fc.assert(fc.property(fc.constantFrom(32, 64, 2048), stream, (size, cs) => run(size, cs)), { numRuns: 400 });
  // A realistic stream: increasing with reordering and duplicates.
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -40, max: 3 }), { minLength: 1, maxLength: 3000 }), (deltas) => {
      let x = 0;
      const cs = deltas.map((d) => (x = Math.max(0, x + (d > 0 ? d : 0)), Math.max(0, x + (d < 0 ? d : 0))));
      return run(2048, cs);
    }),
    { numRuns: 100 },
  );
  t.pass('random streams agree with the model');
});

t.test('window edges', async (t) => {
  const w = new ReplayWindow(2048);
  t.ok(w.check(0), 'first counter 0 accepted');
  w.commit(0);
  t.notOk(w.check(0), 'replay of 0 rejected');
  w.commit(5000);
  t.notOk(w.check(5000 - 2048), 'exactly window-size behind is too old');
  t.ok(w.check(5000 - 2047), 'one inside the window is accepted');
  t.notOk(w.check(-1), 'negative counter rejected');
  t.notOk(w.check(1.5), 'fractional counter rejected');
  t.equal(w.highest, 5000, 'highest tracks the top');
  t.throws(() => new ReplayWindow(100), RangeError, 'size must be a multiple of 32');
});

t.test('control-message replay guard', async (t) => {
  const store = new MemoryNumberStore();
  const g = new ReplayGuard(store);
  await g.accept('dev-1', 1);
  await g.accept('dev-1', 3);
  await t.rejects(g.accept('dev-1', 3), { name: 'KagiError', code: 'replay' }, 'same seq again');
  await t.rejects(g.accept('dev-1', 2), { name: 'KagiError', code: 'replay' }, 'older seq');
  await g.accept('dev-2', 1);
  t.pass('other senders have their own sequence');
  // Racing duplicates: exactly one wins.
  const results = await Promise.allSettled([g.accept('dev-1', 10), g.accept('dev-1', 10)]);
  t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'], 'one of two racing copies passes');
  // A new guard on the same store remembers (a restart).
  const g2 = new ReplayGuard(store);
  await t.rejects(g2.accept('dev-1', 10), { code: 'replay' }, 'remembered across restart');
});

t.test('send counter never repeats across restarts', async (t) => {
  const store = new MemoryNumberStore();
  const a = new SendCounter(store, 4);
  const first = [await a.take('config'), await a.take('config'), await a.take('config')];
  t.same(first, [1, 2, 3], 'counts from 1');
  t.equal(await a.take('auth'), 1, 'per peer');
  const b = new SendCounter(store, 4); // restart: unused reserved numbers are skipped
  const next = await b.take('config');
  t.ok(next > 3, `after a restart the next is above anything used (${next})`);
  const many = await Promise.all(Array.from({ length: 50 }, () => b.take('config')));
  t.equal(new Set(many).size, 50, 'concurrent takes are unique');
  t.ok(Math.min(...many) > next, 'and above the earlier ones');
  t.ok(((await store.get('tx:config')) ?? 0) >= Math.max(...many), 'the persisted bound covers every number handed out');
});
