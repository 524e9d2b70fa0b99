/**
 * bench/onboarding: N terminals through device auth + join + keys on the
 * embedded broker, beside a bare-MQTT floor measured in the same run: plain
 * aedes, no crypto, no store, the same number of request/response round
 * trips per terminal (a join is 6: config→auth, auth→config, config→keys,
 * keys→terminal and back, plus the terminal's two requests).
 *
 *   npm run bench:onboarding -- --n 1000 --concurrency 50
 */
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { startControlPlane } from '../servers/control-plane.js';
import { addDevice, addUser, addVpn, grant } from '../servers/admin.js';
import { parseBundle, type Bundle } from '../device/bundle.js';
import { TerminalAgent } from '../device/terminal.js';
import { nodePlatform } from '../runtime/node/platform.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '1000' }, concurrency: { type: 'string', default: '50' } } });
const N = Number(values.n);
const C = Number(values.concurrency);
const ROUND_TRIPS = 6;

async function pool(n: number, c: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(c, n) }, async () => {
    while (next < n) await job(next++);
  }));
}

async function kagiRun(): Promise<number> {
  const crypto = nodeCrypto();
  const dir = mkdtempSync(join(tmpdir(), 'kagi-bench-'));
  const cp = await startControlPlane({ dataDir: dir, crypto, port: 0, timeoutMs: 60_000 });
  await addVpn(cp.store, { id: 'plant', protocol: 'tcp', port: 5020 });
  await addUser(cp.store, 'bench', 'bench-password');
  await grant(cp.store, 'plant', 'bench');
  const bundles: Bundle[] = [];
  for (let i = 0; i < N; i++) {
    const mac = `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    bundles.push(parseBundle(await addDevice(cp.store, cp.keys, crypto, { id: `t${i}`, mac, kind: 'terminal', broker: cp.brokerUrl })));
  }
  const agents: TerminalAgent[] = [];
  const t0 = performance.now();
  await pool(N, C, async (i) => {
    const a = new TerminalAgent(bundles[i]!, nodePlatform({ brokerUrl: cp.brokerUrl }), { timeoutMs: 60_000 });
    agents.push(a);
    await a.start();
    await a.configure();
    await a.join('bench', 'bench-password');
  });
  const ms = performance.now() - t0;
  for (const a of agents) await a.stop();
  await cp.close();
  rmSync(dir, { recursive: true, force: true });
  return ms;
}

async function floorRun(): Promise<number> {
  const aedes = await Aedes.createBroker();
  const server = createServer((sock) => (sock.setNoDelay(true), aedes.handle(sock)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const noDelay = (c: mqtt.MqttClient) => (c.stream as unknown as { setNoDelay(v: boolean): void }).setNoDelay(true);
  const responder = await mqtt.connectAsync(url, { clientId: 'floor-svc' });
  noDelay(responder);
  await responder.subscribeAsync('floor/req/+', { qos: 1 });
  responder.on('message', (topic, payload) => void responder.publish(`floor/res/${topic.split('/')[2]}`, payload, { qos: 1 }));
  const clients: mqtt.MqttClient[] = [];
  const t0 = performance.now();
  await pool(N, C, async (i) => {
    const c = await mqtt.connectAsync(url, { clientId: `floor-${i}` });
    noDelay(c);
    clients.push(c);
    await c.subscribeAsync(`floor/res/${i}`, { qos: 1 });
    for (let k = 0; k < ROUND_TRIPS; k++) {
      const got = new Promise<void>((r) => c.once('message', () => r()));
      await c.publishAsync(`floor/req/${i}`, Buffer.alloc(200), { qos: 1 });
      await got;
    }
  });
  const ms = performance.now() - t0;
  for (const c of clients) await c.endAsync();
  await responder.endAsync();
  await new Promise<void>((r) => aedes.close(() => r()));
  server.close();
  return ms;
}

const floor = await floorRun();
const kagi = await kagiRun();
const rate = (ms: number) => (N / (ms / 1000)).toFixed(1);
console.log(`onboarding of ${N} terminals, concurrency ${C}`);
console.log(`  bare MQTT floor (${ROUND_TRIPS} round trips each): ${floor.toFixed(0)} ms  ${rate(floor)} /s`);
console.log(`  kagi config + join + keys:        ${kagi.toFixed(0)} ms  ${rate(kagi)} joins/s`);
console.log(`  ratio kagi/floor (time): ${(kagi / floor).toFixed(2)}x`);
process.exit(0);
