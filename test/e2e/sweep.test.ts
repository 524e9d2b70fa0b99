/**
 * The key server's lease holder sweeps replay windows (decision 64): a
 * window of a sender era idle past the bound and CONNECT eras beyond the
 * cap are gone after its first tick; current ones and era 0 stay.
 */
import t from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { DB_FILE } from '../../servers/data-dir.js';
import { controlPlane, tempDir, until } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { CONNECT_ERAS_KEPT, ERA_IDLE_SWEEP_S, nowSeconds } from '../../servers/store/windows.js';

t.test('kagi up sweeps idle era windows and caps CONNECT eras', async (t) => {
  const data = tempDir(t);
  const now = nowSeconds();
  const before = new SqliteStore(data); // windows left by an earlier run
  const claim = before.numbers.claim!.bind(before.numbers);
  await claim('rx:auth:old-dev~000000a1', 3, now - ERA_IDLE_SWEEP_S - 60);
  await claim('rx:auth:old-dev~000000a2', 3, now);
  await claim('rx:auth:old-dev', 3, now - 10 * ERA_IDLE_SWEEP_S);
  for (let e = 1; e <= CONNECT_ERAS_KEPT + 1; e++) await claim(`connect:old-dev~${e.toString(16).padStart(8, '0')}`, 1, now - 1000 + e);
  await before.close();
  // Read beside the control plane (WAL: readers do not block its writes).
  const db = new Database(join(data, DB_FILE), { readonly: true });
  t.teardown(() => db.close());
  const gone = (key: string) => db.prepare('SELECT 1 FROM seq_windows WHERE key = ?').get(key) === undefined;
  t.notOk(gone('rx:auth:old-dev~000000a1'), 'before kagi up: the idle era window is there');

  const cp = await controlPlane(data, { rekeyPeriodMs: 0 });
  t.teardown(() => cp.close());
  t.ok(await until(() => gone('rx:auth:old-dev~000000a1'), deadline(5000)), 'the idle era window is swept');
  t.ok(await until(() => gone('connect:old-dev~00000001'), deadline(5000)), 'the oldest CONNECT era beyond the cap is swept');
  t.notOk(gone('rx:auth:old-dev~000000a2'), 'the current era window is kept');
  t.notOk(gone('rx:auth:old-dev'), 'the era 0 window is kept');
  t.notOk(gone('connect:old-dev~00000002'), 'the newest 32 CONNECT eras are kept');
});
