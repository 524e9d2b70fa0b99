/**
 * protocol/deque.ts: the ring buffer against an array doing the same
 * operations. On aedes's own emitter: test/broker/emitter-depth.test.ts;
 * as the config server's admission line: test/servers/admission.test.ts.
 */
import t from 'tap';
import { Deque } from '../../protocol/deque.js';

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
