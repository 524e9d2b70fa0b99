/**
 * Embodiment 1 against the Mosquitto already running on 127.0.0.1:1883
 * (--broker). An observer subscribed to '#' records every payload: no
 * password, credential, config field, key or tunneled byte may appear.
 */
import t from 'tap';
import mqtt from 'mqtt';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { agent, controlPlane, device, seedDataDir, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { kagiUp } from '../helpers/cli.js';
import { MOSQUITTO_SKIP, MOSQUITTO_URL, mosquittoUp } from '../helpers/mosquitto.js';
import { Tunnels } from '../../runtime/node/tunnel.js';

const up = await mosquittoUp();
if (!up) console.error(`\n*** ${MOSQUITTO_SKIP} ***\n`);

t.test('join and tunnel over Mosquitto; the broker sees only ciphertext', { skip: up ? false : MOSQUITTO_SKIP }, async (t) => {
  const seen: Buffer[] = [];
  const observer = mqtt.connect(MOSQUITTO_URL, { clientId: `kagi-observer-${process.pid}` });
  await new Promise<void>((r) => observer.once('connect', () => r()));
  await observer.subscribeAsync('kagi/#', { qos: 1 });
  observer.on('message', (_topic, payload) => seen.push(Buffer.from(payload)));
  t.teardown(() => observer.endAsync());

  const echo = createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.teardown(() => echo.close());
  const cp = await controlPlane(tempDir(t), { brokerUrl: MOSQUITTO_URL });
  t.teardown(() => cp.close());
  t.equal(cp.broker, null, 'no embedded broker: the services use Mosquitto');
  await vpnWithUsers(cp, 'plant', (echo.address() as AddressInfo).port, { alice: 'alice-secret-pw', bob: 'bob-secret-pw' });

  const tun: Record<string, Tunnels> = {};
  const start = async (id: string, user: string, listen: boolean) => {
    const b = await device(cp, id);
    const a = agent(b, MOSQUITTO_URL, { brokerAuth: 'none', onData: (v, f, p) => tun[id]?.onData(v, f, p) });
    tun[id] = Tunnels.forAgent(a, listen ? [{ vpn: 'plant', localPort: 0, peer: 'mq-b' }] : [], []);
    t.teardown(async () => {
      await tun[id]!.stop();
      await a.stop();
    });
    await a.start();
    const config = await a.configure();
    await a.join(user, `${user}-secret-pw`);
    return { b, config };
  };
  const { b: bundleA, config } = await start('mq-a', 'alice', true);
  await start('mq-b', 'bob', false);
  const [port] = await tun['mq-a']!.start();
  await tun['mq-b']!.start();

  const marker = Buffer.concat([Buffer.from('TUNNELED-PLAINTEXT-MARKER'), randomBytes(4096)]);
  const back = await new Promise<Buffer>((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port: port! }, () => s.end(marker));
    const parts: Buffer[] = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
  });
  t.ok(back.equals(marker), 'bytes through the tunnel arrive intact both ways');
  t.ok(await until(() => seen.length > 10), `observer recorded ${seen.length} payloads`);

  const groupKey = (await cp.store.currentSessionKey('plant'))!.key;
  const needles: [string, Buffer][] = [
    ['alice password', Buffer.from('alice-secret-pw')],
    ['bob password', Buffer.from('bob-secret-pw')],
    ['device MAC (credential)', Buffer.from(bundleA.mac)],
    ['config field pollIntervalMs', Buffer.from('pollIntervalMs')],
    ['config field services', Buffer.from(String((config.services as Record<string, string>).auth))],
    ['VPN group key', Buffer.from(groupKey)],
    ['device private key', Buffer.from(bundleA.secretKey)],
    ['tunneled bytes', marker.subarray(0, 25)],
    ['tunneled random bytes', marker.subarray(100, 132)],
  ];
  for (const [what, needle] of needles) {
    t.notOk(seen.some((p) => p.includes(needle)), `no payload contains the ${what}`);
  }
});

t.test('one service per process on a shared broker and data dir', { skip: up ? false : MOSQUITTO_SKIP }, async (t) => {
  const data = tempDir(t);
  const b = await seedDataDir(data, { deviceId: 'split-a', mac: '02:00:00:00:05:01', broker: MOSQUITTO_URL, password: 'alice-secret-pw' });

  for (const svc of ['auth', 'config', 'keys']) {
    const child = await kagiUp(['--broker', MOSQUITTO_URL, '--services', svc, '--data', data]);
    t.teardown(() => child.kill('SIGTERM'));
    t.pass(`${svc} runs in its own process`);
  }
  const a = agent(b, MOSQUITTO_URL, { brokerAuth: 'none' });
  t.teardown(() => a.stop());
  await a.start();
  await a.configure();
  const vpns = await a.join('alice', 'alice-secret-pw');
  t.same(vpns.map((v) => [v.id, v.epoch]), [['plant', 1]], 'a terminal joins through three separate service processes');
});
