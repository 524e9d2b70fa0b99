/** Store contract on SQLite (a real file), plus migrations and reopening. */
import t from 'tap';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { tempDir } from '../helpers/control-plane.js';
import { storeContract } from './store-contract.js';
import { ticketContract } from './tickets-contract.js';
import { SendCounter } from '../../protocol/replay.js';

const dir = tempDir(t);
storeContract(t, 'sqlite', async () => new SqliteStore(dir));
const ticketsDir = tempDir(t);
ticketContract(t, 'sqlite', async () => new SqliteStore(ticketsDir));

t.test('reopening a data dir keeps the data and applies no migration twice', async (t) => {
  const d = tempDir(t);
  const a = new SqliteStore(d);
  await a.addUser({ id: 'u', passwordHash: 'h' });
  await a.close();
  const b = new SqliteStore(d);
  t.teardown(() => b.close());
  t.same(await b.getUser('u'), { id: 'u', passwordHash: 'h' }, 'data survives');
});

t.test("a service's counter for a new peer and its era: one write, kept across a reopen", async (t) => {
  const d = tempDir(t);
  const a = new SqliteStore(d);
  const sets: string[][] = [];
  const numbers = a.numbers;
  // Count the calls the counter makes, passing each on to the real store.
  const spy: typeof numbers = {
    get: (k) => numbers.get(k),
    set: (k, v) => (sets.push([k]), numbers.set(k, v)),
    setMany: (e) => (sets.push(e.map(([k]) => k)), numbers.setMany!(e)),
  };
  const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));
  const first = await new SendCounter(spy, 64, 'tx:', random).takeWithEra('term-1');
  t.same(sets, [['tx:term-1', 'era:tx:term-1']], 'the first block and the new era in one write');
  await a.close();
  const b = new SqliteStore(d);
  t.teardown(() => b.close());
  t.equal(await b.numbers.get('era:tx:term-1'), first.era, 'the era is on disk');
  t.equal(await b.numbers.get('tx:term-1'), 64, 'with its block');
  const again = await new SendCounter(b.numbers, 64, 'tx:', random).takeWithEra('term-1');
  t.same(again, { seq: 65, era: first.era }, 'a restart counts on past the block, in the same era');
});
