/**
 * The control plane on PostgreSQL: the whole first story with the tables in
 * the PostgreSQL on 127.0.0.1:5432, a restart on the same tables keeps
 * every membership and key, and the CLI's admin commands and status work
 * with --store as they do on a data dir.
 */
import t from 'tap';
import { controlPlane, joinedAgent, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { kagi, kagiIn } from '../helpers/cli.js';
import { requestRekey } from '../../servers/admin.js';
import { postgresMissing, postgresSchema } from '../helpers/postgres.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const enc = new TextEncoder();
const dec = new TextDecoder();
const why = await postgresMissing();

t.test('join, frames, rekey and restart with the tables in PostgreSQL', { skip: why ?? false }, async (t) => {
  const store = postgresSchema(t);
  const data = tempDir(t);
  let cp = await controlPlane(data, { store, rekeyPeriodMs: 0 });
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const got: string[] = [];
  const a = await joinedAgent(t, cp, 'term-a', 'alice');
  const b = await joinedAgent(t, cp, 'term-b', 'bob', { onData: (_v, f, p) => got.push(`${f}:${dec.decode(p)}`) });
  await a.send('plant', 'term-b', enc.encode('over postgres'));
  t.ok(await until(() => got.includes('term-a:over postgres')), 'frames flow between members joined through PostgreSQL tables');
  t.same((await cp.store.members('plant')).map((m) => [m.deviceId, m.keyId]), [['term-a', 1], ['term-b', 1]], 'VPN table in PostgreSQL');
  await requestRekey(cp.store, 'plant'); // kagi vpn rekey plant
  t.ok(await until(() => a.epochs().plant === 2 && b.epochs().plant === 2), 'a rekey through PostgreSQL reaches both');

  await cp.close();
  cp = await controlPlane(data, { store });
  t.teardown(() => cp.close());
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-a', 'term-b'], 'a restart on the same tables keeps the members');
  t.equal((await cp.store.currentSessionKey('plant'))!.epoch, 2, 'and the current epoch');
});

t.test('the CLI with --store', { skip: why ?? false }, async (t) => {
  const store = postgresSchema(t);
  const data = tempDir(t);
  const early = await kagiIn(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020', '--data', data, '--store', store]);
  t.equal(early.code, 1, 'an admin command on a schema without kagi tables is refused');
  t.match(early.stderr, /no kagi tables in schema \w+: check the URL/, 'saying which schema and what to check');
  t.equal(kagi(['init', '--data', data, '--store', store]).code, 0, 'kagi init --store makes the tables and the keys');
  t.equal((await kagiIn(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020', '--priority', '4', '--data', data, '--store', store])).code, 0, 'vpn add into PostgreSQL');
  t.equal((await kagiIn(['user', 'add', 'alice', '--password-stdin', '--data', data, '--store', store], 'alice-password\n')).code, 0, 'user add');
  t.equal((await kagiIn(['vpn', 'grant', 'plant', 'alice', '--data', data, '--store', store])).code, 0, 'grant');
  const st = await kagiIn(['status', '--json', '--data', data, '--store', store]);
  t.equal(st.code, 0, 'status from PostgreSQL');
  t.match(JSON.parse(st.stdout).vpns, [{ id: 'plant', priority: 4 }], 'shows what was added');
  const local = await kagiIn(['status', '--json', '--data', data]);
  t.equal(local.code, 1, 'status without --store on a PostgreSQL deployment\'s data dir is refused, not an empty fleet');
  t.match(local.stderr, /no kagi\.db.*pass the same --store/, 'and says to pass --store');
  t.notOk(existsSync(join(data, 'kagi.db')), 'no SQLite file made');
  const bad = await kagiIn(['status', '--data', data, '--store', 'mysql://h/db']);
  t.equal(bad.code, 1, 'a store that is not postgres:// is refused');
  t.match(bad.stderr, /--store must be a postgres:\/\/ URL/, 'and says what it takes');
});
