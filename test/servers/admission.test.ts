/**
 * The config server's admission (servers/config/admission.ts): at most
 * `limit` places held, the rest waiting in arrival order, a full waiting
 * line refused, a place given back once however often it is given back.
 */
import t from 'tap';
import { Admission } from '../../servers/config/admission.js';

/** Let every settled promise's continuation run. */
const settle = () => new Promise((r) => setImmediate(r));

t.test('limit places at once; the rest in arrival order; each place passed on', async (t) => {
  const a = new Admission(2, 100);
  const order: number[] = [];
  const held = new Map<number, () => void>();
  for (let i = 0; i < 6; i++) void a.enter().then((leave) => (order.push(i), held.set(i, leave!)));
  await settle();
  t.same(order, [0, 1], 'two enter at once');
  t.equal(a.queued, 4, 'four wait');
  held.get(1)!();
  await settle();
  t.same(order, [0, 1, 2], 'a place given back goes to the first waiting');
  held.get(0)!();
  held.get(2)!();
  await settle();
  t.same(order, [0, 1, 2, 3, 4], 'then the next ones, in order');
  t.equal(a.queued, 1);
});

t.test('giving a place back twice frees it once', async (t) => {
  const a = new Admission(1, 100);
  const first = (await a.enter())!;
  const got: number[] = [];
  void a.enter().then(() => got.push(1));
  void a.enter().then(() => got.push(2));
  first();
  first(); // a finally after an early give-back: must not let a third in
  await settle();
  t.same(got, [1], 'only one waiting request got the one place');
  t.equal(a.queued, 1);
});

t.test('a full waiting line is refused at once, and has room again as it moves', async (t) => {
  const a = new Admission(1, 2);
  const first = (await a.enter())!;
  const waiting = [a.enter(), a.enter()];
  t.equal(await a.enter(), null, 'the third beyond the limit is refused');
  first();
  await settle();
  t.equal(a.queued, 1, 'one moved in');
  const again = a.enter();
  t.equal(a.queued, 2, 'and one more may wait');
  for (const w of [...waiting, again]) void w.then((leave) => leave?.());
  await settle();
  t.equal(a.queued, 0, 'all went through');
});

t.test('the waiting line over many turns: every request enters exactly once, in order, never more than limit at once', async (t) => {
  const a = new Admission(3, 10_000);
  let inside = 0;
  let most = 0;
  const order: number[] = [];
  await Promise.all(Array.from({ length: 5_000 }, async (_, i) => {
    const leave = (await a.enter())!;
    inside++;
    most = Math.max(most, inside);
    order.push(i);
    if (i % 7 === 0) await settle();
    inside--;
    leave();
  }));
  t.equal(most, 3, 'never more than the limit inside');
  t.same(order, Array.from({ length: 5_000 }, (_, i) => i), 'in arrival order');
  t.equal(a.queued, 0);
});

t.test('a limit below one is refused', async (t) => {
  t.throws(() => new Admission(0, 10), RangeError);
  t.throws(() => new Admission(1.5, 10), RangeError);
});
