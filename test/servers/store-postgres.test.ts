/**
 * Store contract on the PostgreSQL running on 127.0.0.1:5432 (database
 * test), in schemas of this run's own, dropped after; plus migrations
 * under concurrent start. KAGI_TEST_POSTGRES overrides the server URL.
 */
import t from 'tap';
import pg from 'pg';
import { PgStore, parsePostgresUrl } from '../../servers/store/postgres.js';
import { storeContract } from './store-contract.js';
import { ticketContract } from './tickets-contract.js';
import { ReplayGuard, SendCounter } from '../../protocol/replay.js';
import { migrations } from '../../servers/store/migrations.js';
import { until } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';
import { POSTGRES as SERVER, postgresMissing, postgresSchema } from '../helpers/postgres.js';

const why = await postgresMissing();

t.test('PostgreSQL', { skip: why ?? false }, async (t) => {
  const url = postgresSchema(t);
  const shared = postgresSchema(t);
  storeContract(t, 'postgres', () => PgStore.open(url));
  const ticketsUrl = postgresSchema(t);
  ticketContract(t, 'postgres', () => PgStore.open(ticketsUrl));

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

  t.test('instances sharing one identity: sequence numbers never shared, each seq claimed once', async (t) => {
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => PgStore.open(url)));
    t.teardown(() => Promise.all([a, b, c].map((s) => s!.close())));
    // Three instances of a service sending to one device: channel nonces are these seqs.
    const counters = [a, b, c].map((s) => new SendCounter(s!.numbers, 1, 'tx:config:'));
    const seqs = (await Promise.all(counters.map((k) => Promise.all(Array.from({ length: 50 }, () => k.take('dev-9')))))).flat();
    t.equal(new Set(seqs).size, 150, '150 takes across three instances, 150 distinct numbers');
    // The same 60 messages delivered to all three instances: each claimed by exactly one.
    const guards = [a, b, c].map((s) => new ReplayGuard(s!.numbers, 'rx:auth:'));
    const wins = await Promise.all(guards.map((g) => Promise.all(Array.from({ length: 60 }, (_, i) => g.accept('dev-9', i + 1).then(() => 1, () => 0)))));
    const perSeq = Array.from({ length: 60 }, (_, i) => wins[0]![i]! + wins[1]![i]! + wins[2]![i]!);
    t.same(perSeq, Array(60).fill(1), 'every seq accepted once across the instances');
  });

  t.test('coalesced reservations from several instances touching the same counters in opposite orders do not deadlock', async (t) => {
    const [a, b] = await Promise.all([PgStore.open(url), PgStore.open(url)]);
    t.teardown(() => Promise.all([a!.close(), b!.close()]));
    const keys = Array.from({ length: 40 }, (_, i) => `tx:keys:d${String(i).padStart(2, '0')}`);
    const rounds = 15;
    for (let r = 0; r < rounds; r++) {
      // One turn each: every call of a store goes in one statement, b's in the reverse order.
      await Promise.all([...keys.map((k) => a!.numbers.add!(k, 1)), ...[...keys].reverse().map((k) => b!.numbers.add!(k, 1))]);
    }
    t.same(await Promise.all(keys.map((k) => a!.numbers.get(k))), keys.map(() => 2 * rounds), 'every add counted once, none lost to a deadlock');
  });
});

t.test('leases: one holder at a time, the next takes over when it goes', { skip: why ?? false }, async (t) => {
  const url = postgresSchema(t);
  const stores = await Promise.all([1, 2, 3].map(() => PgStore.open(url)));
  t.teardown(() => Promise.all(stores.map((s) => s.close())));
  const leases = stores.map((s) => s.lease('keys', { retryMs: 100 }));
  t.teardown(() => Promise.all(leases.map((l) => l.close())));
  const holders = () => leases.filter((l) => l.held);
  t.ok(await until(() => holders().length === 1), 'a holder');
  await new Promise((r) => setTimeout(r, 400));
  t.equal(holders().length, 1, 'exactly one of three holds it, and keeps it');
  const other = stores[0]!.lease('config', { retryMs: 100 });
  t.teardown(() => other.close());
  t.ok(await until(() => other.held), 'another duty is another lease');
  // The holder's server session dies (as when its process is killed). Its
  // process lives on here, and a living instance asks again like any other
  // (it won the race back in about one run in seven, and then no other
  // could take over): so as it steps down, it stops, as a killed one would.
  // Closing it then ends nothing: the terminated session alone frees the lock.
  const first = holders()[0]!;
  const changes: boolean[] = [];
  first.onChange((h) => {
    changes.push(h);
    if (!h) void first.close();
  });
  const c = new pg.Client({ connectionString: SERVER });
  await c.connect();
  await c.query(`SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = hashtext($1)::oid AND objid = hashtext('keys')::oid`, [`kagi:${parsePostgresUrl(url).schema}`]);
  await c.end();
  const t0 = Date.now();
  t.ok(await until(() => holders().length === 1 && !first.held), 'taken over');
  t.ok(Date.now() - t0 < deadline(2_000), `another instance holds it ${Date.now() - t0} ms later`);
  t.same(changes.slice(0, 1), [false], 'the old holder stepped down');
  await holders()[0]!.close();
  t.ok(await until(() => holders().length === 1), 'closing the holder hands it on too');
});

t.test('store URLs', async (t) => {
  t.same(parsePostgresUrl('postgres://u@h:5432/db'), { connectionString: 'postgres://u@h:5432/db', schema: 'kagi' }, 'default schema kagi');
  t.same(parsePostgresUrl('postgresql://u@h/db?schema=site_2'), { connectionString: 'postgresql://u@h/db', schema: 'site_2' }, 'schema from the URL');
  t.throws(() => parsePostgresUrl('postgres://u@h/db?schema=x;drop'), /schema must be lower-case letters, digits and _/, 'no SQL through the schema name');
  t.throws(() => parsePostgresUrl('mysql://h/db'), /expected postgres:\/\//, 'other engines named');
  t.throws(() => parsePostgresUrl('not a url'), /not a URL/, 'garbage named');
  await t.rejects(PgStore.open('postgres://nobody@127.0.0.1:1/x'), /PostgreSQL store postgres:\/\/nobody@127\.0\.0\.1:1\/x: .*ECONNREFUSED/, 'an unreachable server is a clear error naming it');
});
