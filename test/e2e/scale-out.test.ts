/**
 * Scale-out (DESIGN §8, issue 10): three `kagi up --instance` processes,
 * each running auth, config and keys, on the Mosquitto at 127.0.0.1:1883
 * and one PostgreSQL schema. Requests reach one instance through shared
 * subscriptions; once-only duties follow a lease.
 *
 *  - 200 terminals join while one process (one instance of each service)
 *    is killed: every terminal ends in its VPN, once in the table.
 *  - The instance holding the key server's lease is killed: another takes
 *    it within the lease time and periodic rekeys go on, one at a time.
 */
import t, { type Test } from 'tap';
import { addDevice, addUser, addVpn, grant, revokeDevice } from '../../servers/admin.js';
import { loadServiceKeys } from '../../servers/identity.js';
import pg from 'pg';
import { PgStore, parsePostgresUrl } from '../../servers/store/postgres.js';
import { parseBundle, type Bundle } from '../../device/bundle.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { agent, tempDir, until } from '../helpers/control-plane.js';
import { clearRetained, MOSQUITTO_SKIP, MOSQUITTO_URL, mosquittoUp } from '../helpers/mosquitto.js';
import { topics } from '../../protocol/topics.js';
import { POSTGRES, postgresMissing, postgresSchema } from '../helpers/postgres.js';
import { shareGroup, startInstances } from '../helpers/instances.js';
import type { TerminalAgent } from '../../device/terminal.js';

const crypto = nodeCrypto();
const mosquitto = await mosquittoUp();
if (!mosquitto) console.error(`\n*** ${MOSQUITTO_SKIP} ***\n`);
const pgMissing = await postgresMissing();
const skip = !mosquitto ? MOSQUITTO_SKIP : (pgMissing ?? false);

/** VPNs v0..v3 for users u0..u3, and `n` terminals registered in the store. */
async function seed(data: string, store: string, prefix: string, n: number, vpns = 4, rekeyPeriodMs = 0): Promise<Bundle[]> {
  const s = await PgStore.open(store);
  try {
    const keys = loadServiceKeys(data, crypto);
    for (let v = 0; v < vpns; v++) {
      await addVpn(s, { id: `v${v}`, protocol: 'tcp', port: 6000 + v, rekeyPeriodMs });
      await addUser(s, `u${v}`, `u${v}-password`);
      await grant(s, `v${v}`, `u${v}`);
    }
    const out = [];
    for (let i = 0; i < n; i++) {
      const mac = `02:5c:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      out.push(parseBundle(await addDevice(s, keys, crypto, { id: `${prefix}-${i}`, mac, kind: 'terminal', broker: MOSQUITTO_URL })));
    }
    return out;
  } finally {
    await s.close();
  }
}

/** Run `fn` over `items`, `width` at a time. */
async function pool<T>(items: T[], width: number, fn: (x: T, i: number) => Promise<void>): Promise<PromiseSettledResult<void>[]> {
  const results: PromiseSettledResult<void>[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i).then((value) => ({ status: 'fulfilled' as const, value }), (reason: unknown) => ({ status: 'rejected' as const, reason }));
    }
  }));
  return results;
}

t.test('200 terminals join through 3 instances of each service while one of each is killed', { skip }, async (t) => {
  const store = postgresSchema(t);
  const data = tempDir(t);
  const prefix = `so${process.pid}`;
  const bundles = await seed(data, store, prefix, 200);
  const instances = await startInstances(3, { data, store, group: shareGroup(), args: ['--timeout', '3s', '--lease-retry', '300ms'] });
  t.teardown(() => Promise.all(instances.map((i) => i.kill())));

  const agents: TerminalAgent[] = [];
  t.teardown(async () => {
    await Promise.all(agents.map((a) => a?.stop()));
    await clearRetained(bundles.map((b) => topics.state(b.id)));
  });
  let joined = 0;
  let killed = -1;
  const results = await pool(bundles, 25, async (b, i) => {
    // Long enough to outlast a dead instance's request (3 s) and retry.
    const a = agent(b, MOSQUITTO_URL, { brokerAuth: 'none', timeoutMs: 8000, attempts: 6 });
    agents[i] = a;
    await a.start();
    await a.configure();
    await a.join(`u${i % 4}`, `u${i % 4}-password`);
    if (++joined === 60) {
      killed = joined;
      void instances[0]!.kill(); // mid-way: auth, config and keys of instance i1 at once
    }
  });
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`${bundles[i]!.id}: ${(r.reason as Error).message}`] : []));
  t.same(failed, [], 'every terminal joined');
  t.equal(killed, 60, 'instance i1 was killed after 60 joins, with 140 to go');
  t.equal(instances[0]!.child.signalCode, 'SIGKILL', 'and is gone');

  const s = await PgStore.open(store);
  t.teardown(() => s.close());
  const rows = (await Promise.all([0, 1, 2, 3].map((v) => s.members(`v${v}`)))).flat();
  const perDevice = new Map<string, string[]>();
  for (const r of rows) perDevice.set(r.deviceId, [...(perDevice.get(r.deviceId) ?? []), r.vpnId]);
  t.equal(rows.length, 200, '200 membership rows');
  t.same(bundles.filter((b, i) => perDevice.get(b.id)?.join() !== `v${i % 4}`).map((b) => b.id), [], 'each terminal exactly once, in its own VPN');
  t.same(rows.filter((r) => r.keyId < 1).map((r) => r.deviceId), [], 'and each acknowledged its keys');
  t.same(bundles.filter((_b, i) => !agents[i]!.epochs()[`v${i % 4}`]).map((b) => b.id), [], 'every agent holds its VPN key');
  const served = instances.slice(1).map((x) => (x.out().match(/joined v\d/g) ?? []).length);
  t.ok(served.every((n) => n > 0), `the surviving instances both served joins (${served.join(', ')})`);
});

/**
 * Three instances on a fresh schema with `n` terminals of user u0 joined to
 * v0 (its rekey period `period`), and which instance holds the keys lease.
 */
async function joinedThree(t: Test, prefix: string, n: number, period = 0) {
  const store = postgresSchema(t);
  const data = tempDir(t);
  const bundles = await seed(data, store, `${prefix}${process.pid}`, n, 1, period);
  const instances = await startInstances(3, { data, store, group: shareGroup(), args: ['--timeout', '3s', '--lease-retry', '300ms'] });
  t.teardown(() => Promise.all(instances.map((i) => i.kill())));
  const agents = bundles.map((b) => agent(b, MOSQUITTO_URL, { brokerAuth: 'none', timeoutMs: 8000, attempts: 4 }));
  t.teardown(async () => {
    await Promise.all(agents.map((a) => a.stop({ leave: false })));
    await clearRetained(bundles.map((b) => topics.state(b.id)));
  });
  for (const a of agents) {
    await a.start();
    await a.configure();
    await a.join('u0', 'u0-password');
  }
  const holds = (x: (typeof instances)[number]) => x.out().includes('lease keys: held');
  const s = await PgStore.open(store);
  t.teardown(() => s.close());
  return { store, s, bundles, instances, agents, holds };
}

t.test('the key server lease fails over and periodic rekeys happen once', { skip }, async (t) => {
  const period = 2500;
  const { store, s, instances, agents, holds } = await joinedThree(t, 'lf', 2, period);
  t.ok(await until(() => instances.filter(holds).length === 1, 5000), 'one instance holds the key server lease');
  const leader = instances.find(holds)!;
  const epoch = async () => (await s.currentSessionKey('v0'))!.epoch;
  t.ok(await until(async () => (await epoch()) >= 2, period * 3), 'the leader rekeys periodically');

  await leader.kill();
  const killedAt = Date.now();
  const others = instances.filter((x) => x !== leader);
  t.ok(await until(() => others.some(holds), 5000), 'another instance takes the lease');
  const took = Date.now() - killedAt;
  t.ok(took < 2000, `within the lease time (taken ${took} ms after the kill; retry 300 ms)`);
  t.equal(others.filter(holds).length, 1, 'exactly one of the two');

  const before = await epoch();
  t.ok(await until(async () => (await epoch()) > before, period * 3), 'the next periodic rekey happens');
  const after = await epoch();
  t.ok(await until(() => agents.every((a) => a.epochs().v0 === after), 5000), `both members hold epoch ${after}`);
  // Once: no two epochs closer than a period (two holders would rekey back to back).
  const c = new pg.Client({ connectionString: POSTGRES });
  await c.connect();
  const times = (await c.query(`SELECT created_at FROM ${parsePostgresUrl(store).schema}.session_keys WHERE vpn_id = 'v0' ORDER BY epoch`)).rows.map((r) => Number(r.created_at));
  await c.end();
  const gaps = times.slice(1).map((x, i) => x - times[i]!);
  t.ok(gaps.length >= 2 && gaps.every((g) => g >= period - 100), `epochs a period apart, never twice at once (gaps ${gaps.join(', ')} ms)`);
});

t.test('a removal in flight while the key server lease changes hands is rekeyed once', { skip }, async (t) => {
  const { store, s, bundles, instances, agents, holds } = await joinedThree(t, 'ho', 3);
  t.ok(await until(() => instances.filter(holds).length === 1, 5000), 'one instance holds the key server lease');
  const leader = instances.find(holds)!;
  t.equal((await s.currentSessionKey('v0'))!.epoch, 1, 'all three hold epoch 1');

  // The holder dies as the removal is committed: whichever instance takes
  // the lease finds the rekey owed in the table.
  const dead = leader.kill();
  await revokeDevice(s, bundles[2]!.id);
  await dead;
  const others = instances.filter((x) => x !== leader);
  t.ok(await until(() => others.some(holds), 5000), 'another instance takes the lease');
  t.ok(await until(async () => (await s.currentSessionKey('v0'))!.epoch === 2, 20_000), 'the VPN is rekeyed after the handover');
  t.ok(await until(() => agents.slice(0, 2).every((a) => a.epochs().v0 === 2), 20_000), 'the two remaining members hold epoch 2');
  t.equal((await s.getVpn('v0'))!.rekeyRequestedAt, 0, 'nothing is owed any more');
  const c = new pg.Client({ connectionString: POSTGRES });
  await c.connect();
  const epochs = (await c.query(`SELECT epoch FROM ${parsePostgresUrl(store).schema}.session_keys WHERE vpn_id = 'v0' ORDER BY epoch`)).rows.map((r) => Number(r.epoch));
  await c.end();
  t.same(epochs, [1, 2], 'once: epoch 2 and no other');
});
