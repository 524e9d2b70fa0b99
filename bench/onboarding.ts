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
import mqtt from 'mqtt';
import { addDevice } from '../servers/admin.js';
import { benchControlPlane, floorBroker, noDelay } from './common.js';
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
  const { cp, crypto, close } = await benchControlPlane();
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
  await close();
  return ms;
}

async function floorRun(): Promise<number> {
  const broker = await floorBroker();
  const url = broker.url;
  const responder = noDelay(await mqtt.connectAsync(url, { clientId: 'floor-svc' }));
  await responder.subscribeAsync('floor/req/+', { qos: 1 });
  responder.on('message', (topic, payload) => void responder.publish(`floor/res/${topic.split('/')[2]}`, payload, { qos: 1 }));
  const clients: mqtt.MqttClient[] = [];
  const t0 = performance.now();
  await pool(N, C, async (i) => {
    const c = noDelay(await mqtt.connectAsync(url, { clientId: `floor-${i}` }));
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
  await broker.close();
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
