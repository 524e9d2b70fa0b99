/**
 * protocol/waiter-book.ts: a Peer's waiting requests by reqId and by peer
 * (resend(peer) reads only that peer's). Checked against a plain Map over
 * a random sequence of sets and deletes.
 */
import t from 'tap';
import { WaiterBook } from '../../protocol/waiter-book.js';

t.test('by reqId and by peer, as a plain Map filtered by peer says', async (t) => {
  const book = new WaiterBook<{ peer: string; n: number }>();
  const model = new Map<number, { peer: string; n: number }>();
  let seed = 7;
  const rand = (k: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % k);
  let wrong = 0;
  for (let i = 0; i < 5000; i++) {
    const reqId = rand(200);
    if (rand(3) === 0) {
      if (book.delete(reqId) !== model.delete(reqId)) wrong++;
    } else {
      const w = { peer: `d${rand(10)}`, n: i }; // a reqId set again may go to another peer
      book.set(reqId, w);
      model.set(reqId, w);
    }
    const peer = `d${rand(10)}`;
    const want = [...model.values()].filter((w) => w.peer === peer).map((w) => w.n).sort((a, b) => a - b);
    const got = book.waiting(peer).map((w) => w.n).sort((a, b) => a - b);
    if (JSON.stringify(want) !== JSON.stringify(got) || book.size !== model.size || book.get(reqId) !== model.get(reqId)) wrong++;
  }
  t.equal(wrong, 0, '5,000 random sets and deletes: the same waiters by reqId, by peer and in all');
  t.same(book.waiting().length, model.size, 'without a peer: every waiter');
  t.same(book.ids().sort((a, b) => a - b), [...model.keys()].sort((a, b) => a - b), 'every reqId');
  t.same(book.waiting('nobody'), [], 'a peer with nothing waiting');
});
