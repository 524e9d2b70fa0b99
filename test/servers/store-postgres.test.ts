/**
 * Store contract on the PostgreSQL running on 127.0.0.1:5432 (database
 * test), in schemas of this run's own, dropped after; plus migrations
 * under concurrent start. KAGI_TEST_POSTGRES overrides the server URL.
 */
import t from 'tap';
import pg from 'pg';
import { PgStore, parsePostgresUrl } from '../../servers/store/postgres.js';
import { storeContract } from './store-contract.js';
import { migrations } from '../../servers/store/migrations.js';
import { POSTGRES as SERVER, postgresMissing, postgresSchema } from '../helpers/postgres.js';

const why = await postgresMissing();

t.test('PostgreSQL', { skip: why ?? false }, async (t) => {
  const url = postgresSchema(t);
  const shared = postgresSchema(t);
  storeContract(t, 'postgres', () => PgStore.open(url));

  t.test('several instances starting at once migrate once', async (t) => {
    const stores = await Promise.all([1, 2, 3].map(() => PgStore.open(shared)));
    t.teardown(() => Promise.all(stores.map((s) => s.close())));
    const c = new pg.Client({ connectionString: SERVER });
    await c.connect();
    const r = await c.query(`SELECT version FROM ${parsePostgresUrl(shared).schema}.schema_migrations ORDER BY version`);
    await c.end();
    t.same(r.rows.map((x) => x.version), migrations('postgres').map((_, i) => i + 1), 'each migration applied exactly once');
    await stores[0]!.addUser({ id: 'u', passwordHash: 'h' });
    t.same(await stores[2]!.getUser('u'), { id: 'u', passwordHash: 'h' }, 'instances share the tables');
  });

  t.test('counters only move forward, whichever instance writes last', async (t) => {
    const a = await PgStore.open(url);
    t.teardown(() => a.close());
    await a.numbers.set('tx:x', 64);
    await a.numbers.set('tx:x', 16);
    t.equal(await a.numbers.get('tx:x'), 64, 'a lower value does not move a counter back');
  });
});

t.test('store URLs', async (t) => {
  t.same(parsePostgresUrl('postgres://u@h:5432/db'), { connectionString: 'postgres://u@h:5432/db', schema: 'kagi' }, 'default schema kagi');
  t.same(parsePostgresUrl('postgresql://u@h/db?schema=site_2'), { connectionString: 'postgresql://u@h/db', schema: 'site_2' }, 'schema from the URL');
  t.throws(() => parsePostgresUrl('postgres://u@h/db?schema=x;drop'), /schema must be lower-case letters, digits and _/, 'no SQL through the schema name');
  t.throws(() => parsePostgresUrl('mysql://h/db'), /expected postgres:\/\//, 'other engines named');
  t.throws(() => parsePostgresUrl('not a url'), /not a URL/, 'garbage named');
  await t.rejects(PgStore.open('postgres://nobody@127.0.0.1:1/x'), /PostgreSQL store postgres:\/\/nobody@127\.0\.0\.1:1\/x: .*ECONNREFUSED/, 'an unreachable server is a clear error naming it');
});
