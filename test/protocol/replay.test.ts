/**
 * Replay protection: the VPN frame window against a simple model, and the
 * control-message guard and send counter through their storage.
 */
import t from 'tap';
import fc from 'fast-check';
import { ReplayWindow } from '../../protocol/replay-window.js';
import { ReplayGuard, SendCounter, SEQ_WINDOW, slideWindow, windowAt, type SeqWindow } from '../../protocol/replay.js';
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
  await g.accept('dev-1', 2); // instances of a service publish in another order than they reserved
  t.pass('a late seq within the window, once');
  await t.rejects(g.accept('dev-1', 2), { name: 'KagiError', code: 'replay' }, 'and not twice');
  await g.accept('dev-1', 3 + SEQ_WINDOW);
  await t.rejects(g.accept('dev-1', 3), { name: 'KagiError', code: 'replay' }, 'below the window: too old');
  await g.accept('dev-2', 1);
  t.pass('other senders have their own sequence');
  // Racing duplicates: exactly one wins.
  const results = await Promise.allSettled([g.accept('dev-1', 10), g.accept('dev-1', 10)]);
  t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'], 'one of two racing copies passes');
  // A new guard on the same store remembers (a restart).
  const g2 = new ReplayGuard(store);
  await t.rejects(g2.accept('dev-1', 10), { code: 'replay' }, 'remembered across restart');
  await t.rejects(g2.accept('dev-1', 9), { code: 'replay' }, 'after a restart everything below the top counts as seen');
});

t.test('replay window slides like RFC 4303 over 32 seqs', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 400 }), (cs) => {
      const m = new ModelWindow(SEQ_WINDOW);
      let w: SeqWindow | undefined;
      for (const c of cs) {
        const next = slideWindow(w, c);
        if ((next !== null) !== m.accept(c)) return false;
        if (next) w = next;
      }
      return true;
    }),
    { numRuns: 400 },
  );
  let w = slideWindow(undefined, 5)!;
  t.same(w, { top: 5, bits: 1 }, 'first seq');
  w = slideWindow(w, 7)!;
  t.same(w, { top: 7, bits: 0b101 }, 'moves up, remembers 5');
  t.equal(slideWindow(w, 5), null, '5 again refused');
  w = slideWindow(w, 6)!;
  t.same(w, { top: 7, bits: 0b111 }, '6 late, taken');
  t.same(slideWindow(w, 7 + 32), { top: 39, bits: 1 }, 'a jump of the whole window clears it (no shift mod 32)');
  t.same(slideWindow(w, 7 + 31), { top: 38, bits: ((0b111 << 31) | 1) >>> 0 }, 'one short keeps the top bit');
  t.equal(slideWindow(windowAt(100), 69), null, 'restored from a top: below it is seen');
  t.equal(slideWindow(windowAt(100), 68), null, 'and beyond it too old');
});

t.test('send counter with an atomic add (a store shared by instances)', async (t) => {
  const m = new MemoryNumberStore();
  const shared = { get: (k: string) => m.get(k), set: (k: string, v: number) => m.set(k, v), add: async (k: string, n: number) => {
    const v = ((await m.get(k)) ?? 0) + n;
    await m.set(k, v);
    return v;
  } };
  const a = new SendCounter(shared, 4);
  const b = new SendCounter(shared, 4);
  const got = [await a.take('d'), await b.take('d'), await a.take('d'), await b.take('d')];
  t.same(got, [1, 5, 2, 6], 'each instance takes its own block');
  const one = [new SendCounter(shared, 1), new SendCounter(shared, 1)];
  const x = [await one[0]!.take('e'), await one[1]!.take('e'), await one[0]!.take('e')];
  t.same(x, [1, 2, 3], 'blocks of one: numbers in the order they are taken');
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

t.test('eras: a sender that lost its counters starts a new window at once; earlier eras keep theirs', async (t) => {
  const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
  const disk = new MemoryNumberStore();
  const a = new SendCounter(disk, 4, 'tx:', random);
  const first = await a.takeWithEra('auth');
  t.equal(first.seq, 1, 'counts from 1');
  t.not(first.era, 0, 'a store without a counter gets a random non-zero era');
  t.equal(await disk.get('era:tx:auth'), first.era, 'persisted with the counter');
  const again = await new SendCounter(disk, 4, 'tx:', random).takeWithEra('auth');
  t.equal(again.era, first.era, 'a restart with its store keeps the era');
  t.ok(again.seq > first.seq, 'and goes on counting');
  const wiped = await new SendCounter(new MemoryNumberStore(), 4, 'tx:', random).takeWithEra('auth');
  t.equal(wiped.seq, 1, 'a wiped store counts from 1 again');
  t.not(wiped.era, first.era, 'in a new era');
  const shared = { get: (k: string) => disk.get(k), set: (k: string, v: number) => disk.set(k, v), add: async () => 1 };
  t.equal((await new SendCounter(shared, 1, 'tx:', random).takeWithEra('x')).era, 0, 'shared counters (atomic add) use era 0');

  // The receiver, in memory (a device) and on a claiming store (services).
  const claims = new Map<string, SeqWindow>();
  const claiming = {
    get: async () => undefined, set: async () => undefined,
    claim: async (k: string, seq: number) => {
      const next = slideWindow(claims.get(k), seq);
      if (next) claims.set(k, next);
      return next !== null;
    },
  };
  for (const [name, store] of [['memory', new MemoryNumberStore()], ['claiming store', claiming]] as const) {
    const g = new ReplayGuard(store, 'rx:me:');
    for (let seq = 1; seq <= 40; seq++) await g.accept('dev-1', seq, first.era);
    await g.accept('dev-1', 1, wiped.era);
    t.pass(`${name}: seq 1 of a new era is taken after 40 of the old`);
    await t.rejects(g.accept('dev-1', 1, wiped.era), { code: 'replay' }, `${name}: once`);
    await t.rejects(g.accept('dev-1', 40, first.era), { code: 'replay' }, `${name}: a replay of the earlier era meets its window`);
    await t.rejects(g.accept('dev-1', 2, first.era), { code: 'replay' }, `${name}: and one below it is too old`);
    await g.accept('dev-1', 1, 0);
    t.pass(`${name}: era 0 is a window of its own`);
  }
  t.ok(claims.has('rx:me:dev-1'), 'era 0 keeps the pre-era key');
  t.ok(claims.has(`rx:me:dev-1~${wiped.era.toString(16).padStart(8, '0')}`), 'other eras end in ~ERAHEX');
});
