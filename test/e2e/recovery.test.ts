/**
 * Recovery with no manual step:
 *  - a broker restart (a private Mosquitto, killed and started again on the
 *    same port) during steady traffic and during a join: services and
 *    agents reconnect with backoff and jitter and end in their VPNs;
 *  - kill -9 of the control plane in the middle of a rekey (one member
 *    frozen, so the rekey is still waiting for it), restart on the same data:
 *    every member converges to the one current epoch, no membership lost or
 *    duplicated.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { freePort } from '../helpers/ports.js';
import { kagi, kagiSpawn, kagiUp, watch } from '../helpers/cli.js';
import { agent, controlPlane, crypto, device, joinedAgent, logged, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { haveMosquittoBinary, MOSQUITTO_BINARY_SKIP, startMosquitto } from '../helpers/mosquitto.js';
import { topics } from '../../protocol/topics.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { loadServiceKeys } from '../../servers/identity.js';
import { addDevice, addUser, addVpn, grant } from '../../servers/admin.js';
import { parseBundle } from '../../device/bundle.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exited = (c: ChildProcess) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r)));

if (!haveMosquittoBinary) console.error(`# ${MOSQUITTO_BINARY_SKIP}`);

t.test('broker restart during traffic and during a join', { skip: haveMosquittoBinary ? false : MOSQUITTO_BINARY_SKIP }, async (t) => {
  const port = await freePort();
  let broker = await startMosquitto(port);
  t.teardown(() => void broker?.kill('SIGKILL'));
  const restart = async (downMs: number) => {
    broker!.kill('SIGKILL');
    await exited(broker!);
    await sleep(downMs);
    broker = await startMosquitto(port);
  };
  const lines: string[] = [];
  // Eviction after 25 missed polls (10 s): longer than an agent's reconnect
  // backoff after a few refused attempts (caps 0.5, 1, 2, 4, 8 s), which is
  // what a broker restart on a loaded machine costs. 8 polls (3.2 s) evicted
  // a member now and then in CI: the outage, not the member, was slow.
  const cp = await controlPlane(tempDir(t), { brokerUrl: `mqtt://127.0.0.1:${port}`, liveness: { pollIntervalMs: 400, evictAfter: 25, continueAfterMs: 1200 }, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' });
  const atB: string[] = [];
  const atA: string[] = [];
  const a = await joinedAgent(t, cp, 'term-a', 'alice', { brokerAuth: 'none', onData: (_v, f, p) => atA.push(`${f}:${dec.decode(p)}`) });
  const b = await joinedAgent(t, cp, 'term-b', 'bob', { brokerAuth: 'none', onData: (_v, _f, p) => atB.push(dec.decode(p)) });

  // Steady traffic a → b, through the restart.
  let n = 0;
  let sending = true;
  const traffic = (async () => {
    while (sending) {
      await a.send('plant', 'term-b', enc.encode(`tick ${n++}`)).catch(() => {});
      await sleep(20);
    }
  })();
  t.ok(await until(() => atB.length > 5), 'traffic flows');
  await restart(700);
  const sentAfter = n;
  t.ok(await until(() => atB.some((x) => Number(x.slice(5)) > sentAfter), 10_000), 'traffic flows again after the broker restart');
  sending = false;
  await traffic;

  // A join whose request dies with the broker.
  let killed = false;
  const cb = await device(cp, 'term-c');
  const c = agent(cb, cp.brokerUrl, {
    brokerAuth: 'none',
    timeoutMs: 2000,
    attempts: 8,
    spy: (topic) => {
      if (!killed && topic === topics.service('config', 'join')) {
        killed = true;
        void restart(500);
      }
    },
  });
  t.teardown(() => c.stop({ leave: false }));
  await c.start();
  await c.configure();
  const vpns = await c.join('carol', 'carol-password');
  t.ok(killed, 'the broker died with the join in flight');
  t.same(vpns.map((v) => v.id), ['plant'], 'the join completed by itself');
  // Frames are datagrams: one sent while term-a is still reconnecting and
  // resubscribing after the second restart is lost (a loaded machine makes
  // that window long), so term-c says it again every half second until heard.
  let said = 0;
  const heard = () => atA.includes('term-c:hello after two restarts');
  t.ok(await until(async () => {
    if (!heard() && Date.now() - said > 500) {
      said = Date.now();
      await c.send('plant', 'term-a', enc.encode('hello after two restarts')).catch(() => {});
    }
    return heard();
  }, 8000), 'the late joiner talks to the others');
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-a', 'term-b', 'term-c'], 'every member still in its VPN, once');
  t.equal(logged(lines, /evicted/).length, 0, 'nobody was evicted by the outages');
  t.equal(b.state, 'joined', 'b joined throughout');
});

t.test('kill -9 of the control plane mid-rekey: every member converges to one epoch', async (t) => {
  const data = tempDir(t);
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  const store = new SqliteStore(data);
  const keys = loadServiceKeys(data, crypto);
  const bundles: Record<string, ReturnType<typeof parseBundle>> = {};
  const files: Record<string, unknown> = {};
  let i = 0;
  for (const [id, user] of [['term-a', 'alice'], ['term-b', 'bob'], ['term-c', 'carol']] as const) {
    files[id] = await addDevice(store, keys, crypto, { id, mac: `02:00:00:00:0e:0${++i}`, kind: 'terminal', broker: url });
    bundles[id] = parseBundle(files[id]);
    await addUser(store, user, `${user}-password`);
  }
  await addVpn(store, { id: 'plant', protocol: 'tcp', port: 5020 });
  for (const u of ['alice', 'bob', 'carol']) await grant(store, 'plant', u);
  await store.close();
  const cFile = join(data, 'term-c.json');
  writeFileSync(cFile, JSON.stringify(files['term-c']));

  // Polls slow enough that the frozen member still counts as communicating
  // when the rekey starts, so the rekey waits on it: that is "mid-rekey".
  const upArgs = ['--port', String(port), '--data', data, '--poll-interval', '5s', '--evict-after', '10', '--continue-after', '20s', '--timeout', '4s'];
  let cp = await kagiUp(upArgs);
  t.teardown(() => void cp.kill('SIGKILL'));
  const mk = async (id: string, user: string) => {
    const a = agent(bundles[id]!, url, { timeoutMs: 3000, attempts: 10 });
    t.teardown(() => a.stop({ leave: false }));
    await a.start();
    await a.configure();
    await a.join(user, `${user}-password`);
    return a;
  };
  const a = await mk('term-a', 'alice');
  const b = await mk('term-b', 'bob');
  const c = kagiSpawn(['agent', cFile, '--user', 'carol', '--password-stdin']);
  t.teardown(() => void c.kill('SIGKILL'));
  c.stdin!.end('carol-password\n');
  const cOut = watch(c);
  await cOut.until(/joined plant/);

  c.kill('SIGSTOP');
  const upOut = watch(cp);
  t.equal(kagi(['vpn', 'rekey', 'plant', '--data', data]).code, 0, 'kagi vpn rekey plant');
  const log = await upOut.until(/rekeying plant to epoch 2 \(requested\) for 3 communicating members/);
  t.ok(await until(() => a.epochs().plant === 2 && b.epochs().plant === 2), 'a and b took epoch 2');
  cp.kill('SIGKILL');
  await exited(cp);
  t.notMatch(log, /rekeyed plant to epoch 2:/, 'killed before the rekey finished (c never acknowledged)');

  cp = await kagiUp(upArgs);
  c.kill('SIGCONT');
  await cOut.until(/keys: plant epoch 2/, 20_000);
  t.pass('c, thawed, holds epoch 2');
  const check = new SqliteStore(data);
  t.teardown(() => check.close());
  let rows = '';
  for (let k = 0; k < 200; k++) {
    rows = JSON.stringify((await check.members('plant')).map((m) => [m.deviceId, m.keyId]));
    if (rows === '[["term-a",2],["term-b",2],["term-c",2]]') break;
    await sleep(100);
  }
  t.equal(rows, '[["term-a",2],["term-b",2],["term-c",2]]', 'VPN table: three members, once each, all at key id 2');
  t.equal((await check.currentSessionKey('plant'))!.epoch, 2, 'one current epoch');
  t.same([a.epochs().plant, b.epochs().plant], [2, 2], 'a and b at epoch 2');
});
