/** Coalescer: concurrent single-key calls become one statement each holding a key once. */
import t from 'tap';
import { Coalescer } from '../../servers/store/coalesce.js';

t.test('calls in one turn share one run; a repeated key goes in the next', async (t) => {
  const runs: string[][] = [];
  const c = new Coalescer<number, number>(async (batch) => {
    runs.push(batch.map((b) => b.key));
    return new Map(batch.filter((b) => b.key !== 'none').map((b) => [b.key, b.arg * 10]));
  }, () => -1);
  const out = await Promise.all([c.call('a', 1), c.call('b', 2), c.call('a', 3), c.call('none', 4)]);
  t.same(out, [10, 20, 30, -1], 'each caller gets its own answer; a key not found gets miss()');
  t.same(runs, [['a', 'b', 'none'], ['a']], 'two statements: the repeated key waits for the second');
});

t.test('a batch is capped, and a failed run fails only its own calls', async (t) => {
  const sizes: number[] = [];
  let fail = true;
  const c = new Coalescer<null, string>(async (batch) => {
    sizes.push(batch.length);
    if (fail) {
      fail = false;
      throw new Error('connection lost');
    }
    return new Map(batch.map((b) => [b.key, b.key.toUpperCase()]));
  }, () => '', 3);
  const calls = ['a', 'b', 'c', 'd', 'e'].map((k) => c.call(k, null).then((v) => v, (e: Error) => `error: ${e.message}`));
  t.same(await Promise.all(calls), ['error: connection lost', 'error: connection lost', 'error: connection lost', 'D', 'E'], 'the first three failed together, the rest went on');
  t.same(sizes, [3, 2], 'at most 3 keys per statement');
});

t.test('miss() is a fresh value per caller', async (t) => {
  const c = new Coalescer<null, string[]>(async () => new Map(), () => []);
  const [x, y] = await Promise.all([c.call('p', null), c.call('q', null)]);
  x!.push('mutated');
  t.same(y, [], 'one caller changing its answer does not change another’s');
});
