/**
 * bench/tls: what TLS costs a device at the broker. One embedded broker
 * (kagi up --tls-cert) serves clear MQTT and MQTT over TLS; a registered
 * device connects N times in a row over each (kagi's CONNECT password, a
 * fresh counter every time, then DISCONNECT), with the pin checked on TLS.
 * The floor is the clear connect in the same run, after a warm-up of both;
 * rounds alternate so machine noise falls on both. Prints p50/p99 per
 * connect and the ratio TLS / clear per round, and the median ratio.
 *
 *   npm run bench:tls -- --n 200 --runs 5
 *
 * Needs openssl (the certificate is made in a temp dir).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { MqttLink } from '../runtime/node/mqtt.js';
import { MemoryNumberStore } from '../protocol/store.js';
import { startControlPlane } from '../servers/control-plane.js';
import { addDevice } from '../servers/admin.js';
import { parseBundle, type Bundle } from '../device/bundle.js';

const { values: v } = parseArgs({ options: { n: { type: 'string', default: '200' }, runs: { type: 'string', default: '5' }, help: { type: 'boolean', default: false } } });
if (v.help) {
  console.log('usage: npm run bench:tls -- [--n 200] [--runs 5]');
  process.exit(0);
}
const N = Number(v.n);
const RUNS = Number(v.runs);

const dir = mkdtempSync(join(tmpdir(), 'kagi-bench-tls-'));
const ssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
if (ssl.status !== 0) throw new Error(`openssl: ${ssl.stderr}`);
const crypto = nodeCrypto();
const cp = await startControlPlane({
  dataDir: join(dir, 'data'), crypto, port: 0, timeoutMs: 60_000,
  tls: { cert: readFileSync(join(dir, 'c.pem'), 'utf8'), key: readFileSync(join(dir, 'k.pem'), 'utf8'), port: 0 },
});
const device = parseBundle(await addDevice(cp.store, cp.keys, crypto, { id: 'bench-1', mac: '02:00:00:00:99:01', kind: 'terminal', broker: cp.fileBroker.broker, ...(cp.fileBroker.brokerTls ? { brokerTls: cp.fileBroker.brokerTls } : {}) }));
const numbers = new MemoryNumberStore();

/** N connects in a row to `url`; each one's ms, CONNECT to CONNACK (TLS handshake included). */
async function connects(b: Bundle, url: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const link = new MqttLink({ url, clientId: b.id, crypto, secretKey: b.secretKey, brokerPublicKey: b.services.broker, numbers, subscriptions: [], onMessage: () => {}, ...(b.brokerTls ? { tls: b.brokerTls } : {}) });
    const t0 = performance.now();
    await link.connect();
    out.push(performance.now() - t0);
    await link.close();
  }
  return out;
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const clearUrl = cp.brokerUrl;
const tlsUrl = cp.fileBroker.broker;
await connects(device, clearUrl, 20); // warm-up: JIT, the store's statements
await connects(device, tlsUrl, 20);
console.log(`bench:tls: ${N} connects per round, clear ${clearUrl} vs TLS ${tlsUrl} (P-256 certificate, public key pinned)`);
console.log(`${'round'.padEnd(7)}${'clear p50'.padStart(11)}${'clear p99'.padStart(11)}${'TLS p50'.padStart(11)}${'TLS p99'.padStart(11)}${'TLS/clear p50'.padStart(15)}`);
const ratios: number[] = [];
for (let r = 1; r <= RUNS; r++) {
  const clear = await connects(device, clearUrl, N);
  const tls = await connects(device, tlsUrl, N);
  const ratio = pct(tls, 50) / pct(clear, 50);
  ratios.push(ratio);
  const ms = (x: number) => `${x.toFixed(2)} ms`.padStart(11);
  console.log(`${String(r).padEnd(7)}${ms(pct(clear, 50))}${ms(pct(clear, 99))}${ms(pct(tls, 50))}${ms(pct(tls, 99))}${`${ratio.toFixed(2)}×`.padStart(15)}`);
}
console.log(`median ratio TLS/clear (p50 connect): ${pct(ratios, 50).toFixed(2)}×`);
await cp.close();
rmSync(dir, { recursive: true, force: true });
