/**
 * The Mosquitto dynamic security driver against a Mosquitto this test
 * starts on a free port with its own config and the dynsec plugin (the one
 * on 1883 is left alone): a device not in the VPN cannot subscribe to the
 * VPN's topic (SUBACK refused); once the tables make it a member it can;
 * once it leaves it cannot.
 */
import t, { type Test } from 'tap';
import { freePort } from '../helpers/ports.js';
import { deadline } from '../helpers/deadline.js';
import mqtt from 'mqtt';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { MosquittoDynsecDriver } from '../../network/mosquitto-dynsec.js';
import type { DesiredState } from '../../network/driver.js';
import { agent, crypto, device, tempDir, vpnWithUsers } from '../helpers/control-plane.js';
import { startControlPlane } from '../../servers/control-plane.js';
import { deleteVpn, revokeDevice } from '../../servers/admin.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { connectKey, staticPassword } from '../../protocol/connect-auth.js';

const PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';
const why = spawnSync('sh', ['-c', 'command -v mosquitto && command -v mosquitto_ctrl']).status !== 0 || !existsSync(PLUGIN)
  ? `SKIPPED: needs mosquitto, mosquitto_ctrl and ${PLUGIN} (apt-get install -y mosquitto mosquitto-clients)`
  : null;
if (why) console.error(`\n*** ${why} ***\n`);

const state = (members: string[], cut = false): DesiredState => ({ vpns: [{ id: 'plant', protocol: 'tcp', port: 5020, priority: 0, rate: 0, cut, members: members.map((deviceId) => ({ deviceId, address: null, via: null })) }] });

/** A Mosquitto of the test's own with the dynsec plugin; admin / admin-password. */
async function dynsecMosquitto(t: Test): Promise<string> {
  const dir = tempDir(t);
  const port = await freePort();
  const ds = join(dir, 'dynsec.json');
  spawnSync('mosquitto_ctrl', ['dynsec', 'init', ds, 'admin', 'admin-password']);
  writeFileSync(join(dir, 'mosquitto.conf'), [`listener ${port} 127.0.0.1`, 'allow_anonymous false', 'persistence false',
    // Started as root, Mosquitto would drop to its own user and could not
    // read the test's private temp dir.
    ...(process.getuid?.() === 0 ? ['user root'] : []), `plugin ${PLUGIN}`, `plugin_opt_config_file ${ds}`, ''].join('\n'));
  const broker = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
  t.teardown(() => broker.kill());
  for (let i = 0; i < 50; i++) {
    const up = await new Promise<boolean>((r) => createConnection({ host: '127.0.0.1', port }).once('connect', function (this: import('node:net').Socket) { this.destroy(); r(true); }).once('error', () => r(false)));
    if (up) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return `mqtt://127.0.0.1:${port}`;
}

t.test('dynsec roles follow VPN membership', { skip: why ?? false }, async (t) => {
  const url = await dynsecMosquitto(t);
  const driver = new MosquittoDynsecDriver({ url, username: 'admin', password: 'admin-password' });
  t.teardown(() => driver.close());
  await driver.check();
  await driver.ensureClient('dev-1', 'dev-1-password');
  await driver.ensureClient('dev-2', 'dev-2-password');

  // Dynsec disconnects a client whose roles change (so new ACLs apply at
  // once); kagi agents reconnect by themselves, this probe connects afresh.
  // SUBACK return code: MQTT.js rejects a refused subscription (0x80).
  const granted = async (topic: string) => {
    const dev = await mqtt.connectAsync(url, { clientId: 'dev-1', username: 'dev-1', password: 'dev-1-password', reconnectPeriod: 0 });
    try {
      return await dev.subscribeAsync(topic, { qos: 1 }).then((g) => g[0]!.qos, (e: { packet?: { granted?: number[] } }) => e.packet?.granted?.[0] ?? -1);
    } finally {
      await dev.endAsync();
    }
  };

  await driver.apply(state([]));
  t.equal(await granted('kagi/v1/vpn/plant/dev-1'), 128, 'not a member: SUBACK refused');
  await driver.apply(state(['dev-1']));
  t.equal(await granted('kagi/v1/vpn/plant/dev-1'), 1, 'a member: its own VPN topic granted');
  t.equal(await granted('kagi/v1/vpn/plant/all'), 1, 'and the VPN-wide topic');
  t.equal(await granted('kagi/v1/vpn/plant/dev-2'), 128, "but never another member's topic");
  await driver.apply(state(['dev-1']));
  t.equal(await granted('kagi/v1/vpn/plant/dev-1'), 1, 'applying the same state again changes nothing');
  // Cut by the bandwidth plan: dev-1's frames are dropped, it stays connected.
  const delivered = async () => {
    const watcher = await mqtt.connectAsync(url, { clientId: 'watch', username: 'admin', password: 'admin-password', reconnectPeriod: 0 });
    const dev = await mqtt.connectAsync(url, { clientId: 'dev-1', username: 'dev-1', password: 'dev-1-password', reconnectPeriod: 0 });
    try {
      let n = 0;
      watcher.on('message', () => n++);
      await watcher.subscribeAsync('kagi/v1/vpn/plant/#', { qos: 1 });
      await dev.publishAsync('kagi/v1/vpn/plant/all', 'frame', { qos: 1 });
      await new Promise((r) => setTimeout(r, 300));
      return { n, connected: dev.connected };
    } finally {
      await dev.endAsync();
      await watcher.endAsync();
    }
  };
  t.same(await delivered(), { n: 1, connected: true }, 'a member’s frame is delivered');
  await driver.apply(state(['dev-1'], true));
  t.same(await delivered(), { n: 0, connected: true }, 'cut: its frame is dropped, the member stays connected');
  await driver.apply(state(['dev-1'], false));
  t.same(await delivered(), { n: 1, connected: true }, 'restored: delivered again');
  await driver.apply(state(['dev-2']));
  t.equal(await granted('kagi/v1/vpn/plant/dev-1'), 128, 'after leaving: refused again');
  const [listed] = await driver.send([{ command: 'getClient', username: 'dev-2' }]);
  const roles = ((listed!.data as { client: { roles: { rolename: string }[] } }).client.roles).map((r) => r.rolename).sort();
  t.same(roles, ['kagi-member-plant-dev-2', 'kagi-vpn-plant'], 'the new member holds the VPN role and its own member role');
});

t.test("two drivers in one process are each answered (own client ids; Mosquitto sends every admin's responses to all, matched by correlationData)", { skip: why ?? false }, async (t) => {
  const url = await dynsecMosquitto(t);
  // kagi up's driver and an operator's admin one in one process: with one
  // client id per process they took the session from each other at every
  // reconnect, and commands sent in between went unanswered.
  const drivers = [0, 1].map(() => new MosquittoDynsecDriver({ url, username: 'admin', password: 'admin-password' }));
  t.teardown(() => Promise.all(drivers.map((d) => d.close())));
  const asked = await Promise.all(drivers.flatMap((d, i) => Array.from({ length: 10 }, (_, k) =>
    d.send([{ command: 'createRole', rolename: `probe-${i}-${k}` }, { command: 'getRole', rolename: `probe-${i}-${k}` }]))));
  const names = asked.map((rs) => (rs[1]!.data as { role?: { rolename?: string } } | undefined)?.role?.rolename);
  t.same(names, drivers.flatMap((_, i) => Array.from({ length: 10 }, (_, k) => `probe-${i}-${k}`)), 'each batch got its own responses, in order');
});

t.test('a dynsec driver that cannot reach its broker says so', async (t) => {
  const d = new MosquittoDynsecDriver({ url: `mqtt://127.0.0.1:${await freePort()}`, username: 'admin', password: 'x' });
  await t.rejects(d.check(), /^mosquitto-dynsec: cannot reach mqtt:\/\/127\.0\.0\.1:\d+ as admin/, 'check fails and names the broker and the admin');
  await d.close();
});

t.test('end to end: the control plane programs the dynsec Mosquitto as members join and leave', { skip: why ?? false }, async (t) => {
  const url = await dynsecMosquitto(t);
  const data = tempDir(t);
  const cp = await startControlPlane({ dataDir: data, crypto, brokerUrl: url, timeoutMs: 5000, dynsec: { url, username: 'admin', password: 'admin-password' } });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const b = await device(cp, 'dyn-1');
  await cp.reconcile(); // what the 500 ms loop does: the device's login now exists
  const password = staticPassword(crypto, connectKey(crypto, b.secretKey, b.services.broker), 'dyn-1');
  // A probe with the device's login (another client id, so the agent stays).
  const granted = async () => {
    const c = await mqtt.connectAsync(url, { clientId: `probe-${Date.now()}`, username: 'dyn-1', password, reconnectPeriod: 0 });
    try {
      return await c.subscribeAsync('kagi/v1/vpn/plant/dyn-1', { qos: 1 }).then((g) => g[0]!.qos, (e: { packet?: { granted?: number[] } }) => e.packet?.granted?.[0] ?? -1);
    } finally {
      await c.endAsync();
    }
  };
  // A join here reprograms Mosquitto, which drops the device's connection
  // when its roles change; an answer lost with it comes on the agent's
  // retry, after its timeout. The helper's 3 s twice was shorter than that
  // on a loaded host (a full suite on two cores): the agents' own default.
  const a = agent(b, url, { brokerAuth: 'static', timeoutMs: deadline(10_000), attempts: 3 });
  t.teardown(() => a.stop());
  await a.start();
  t.equal(await granted(), 128, 'a device not in the VPN cannot subscribe to its topic');
  await a.configure();
  await a.join('alice', 'alice-password');
  t.equal(await granted(), 1, 'after joining it can');
  await deleteVpn(cp.store, 'plant');
  const end = Date.now() + deadline(3000);
  let q = 1;
  while (Date.now() < end && (q = await granted()) !== 128) await new Promise((r) => setTimeout(r, 100));
  t.equal(q, 128, 'after leaving (VPN deleted) it cannot');

  // Revoked: Mosquitto itself refuses the device's login from then on.
  await revokeDevice(cp.store, 'dyn-1');
  await cp.reconcile();
  const refused = await mqtt.connectAsync(url, { clientId: `probe-r-${Date.now()}`, username: 'dyn-1', password, reconnectPeriod: 0 }).then(
    async (c) => (await c.endAsync(), 'connected'),
    (e: Error & { code?: number }) => `refused (${e.code ?? e.message})`,
  );
  t.match(refused, /^refused/, 'a revoked device\'s CONNECT is refused by Mosquitto');
  const admin = new MosquittoDynsecDriver({ url, username: 'admin', password: 'admin-password' });
  const [got] = await admin.send([{ command: 'getClient', username: 'dyn-1' }]);
  await admin.close();
  t.equal((got!.data as { client: { disabled?: boolean } }).client.disabled, true, 'its login is disabled in dynsec');
});

t.test('a device revoked while the control plane was down is disabled at the next start', { skip: why ?? false }, async (t) => {
  const url = await dynsecMosquitto(t);
  const data = tempDir(t);
  const dynsec = { url, username: 'admin', password: 'admin-password' };
  const first = await startControlPlane({ dataDir: data, crypto, brokerUrl: url, timeoutMs: 5000, dynsec });
  const b = await device(first, 'dyn-2');
  await first.reconcile();
  await first.close();
  const password = staticPassword(crypto, connectKey(crypto, b.secretKey, b.services.broker), 'dyn-2');
  const login = () => mqtt.connectAsync(url, { clientId: `probe-${Date.now()}`, username: 'dyn-2', password, reconnectPeriod: 0 }).then(async (c) => (await c.endAsync(), true), () => false);
  t.equal(await login(), true, 'the device can log in');
  const store = new SqliteStore(data);
  await revokeDevice(store, 'dyn-2'); // kagi device revoke with no control plane running
  await store.close();
  t.equal(await login(), true, 'nothing enforces it yet');
  const second = await startControlPlane({ dataDir: data, crypto, brokerUrl: url, timeoutMs: 5000, dynsec }); // a restart on a programmed Mosquitto
  t.teardown(() => second.close());
  await second.reconcile();
  t.equal(await login(), false, 'after the next start, Mosquitto refuses it');
});
