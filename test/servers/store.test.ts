/** Store contract on SQLite (a real file), plus migrations and reopening. */
import t from 'tap';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { tempDir } from '../helpers/control-plane.js';
import { storeContract } from './store-contract.js';
import { ticketContract } from './tickets-contract.js';

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
