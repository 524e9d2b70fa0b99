/**
 * bench/relay: terminal → relay → plaintext terminal. Round-trip latency
 * (p50/p99, 64 B, the plaintext terminal echoes) and one-way throughput
 * (1 KiB messages), beside the same messages as bare MQTT between two
 * plain clients on plain aedes, measured in the same run; prints ratios.
 *
 *   npm run bench:relay -- --n 500
 */
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { addDevice } from '../servers/admin.js';
import { benchControlPlane, floorBroker, noDelay } from './common.js';
import { parseBundle } from '../device/bundle.js';
import { TerminalAgent } from '../device/terminal.js';
import { RelayAgent } from '../device/relay.js';
import { PlaintextAgent, parsePlainConfig } from '../device/plaintext.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { TcpRelayPorts, connectToPort } from '../runtime/node/relay-ports.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '500' } } });
const N = Number(values.n);

interface Result { p50: number; p99: number; mbps: number }

/** Latency: N sequential echoes; throughput: N one-way 1 KiB messages. */
async function measure(send: (b: Uint8Array) => Promise<void>, onEcho: (cb: () => void) => void, onArrive: (cb: () => void) => void): Promise<Result> {
  const rtts: number[] = [];
  let echoed: () => void = () => {};
  onEcho(() => echoed());
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    await new Promise<void>((r) => {
      echoed = r;
      void send(new Uint8Array(64));
    });
    rtts.push(performance.now() - t0);
  }
  rtts.sort((a, b) => a - b);
  let arrived = 0;
  let done: () => void = () => {};
  onArrive(() => ++arrived === N && done());
  const t0 = performance.now();
  const all = new Promise<void>((r) => (done = r));
  for (let i = 0; i < N; i++) await send(new Uint8Array(1024).fill(1));
  await all;
  const s = (performance.now() - t0) / 1000;
  return { p50: rtts[Math.floor(N * 0.5)]!, p99: rtts[Math.floor(N * 0.99)]!, mbps: (N * 1024) / s / 1e6 };
}

async function kagiRun(): Promise<Result> {
  const { cp, crypto, close } = await benchControlPlane();
  const mk = async (id: string, kind: 'terminal' | 'relay', mac: string) => parseBundle(await addDevice(cp.store, cp.keys, crypto, { id, mac, kind, broker: cp.brokerUrl }));
  const relay = new RelayAgent(await mk('relay-1', 'relay', '02:00:00:00:00:01'), ['p1'], nodePlatform({ brokerUrl: cp.brokerUrl }));
  const ports = new TcpRelayPorts(relay, [{ name: 'p1', kind: 'tcp', host: '127.0.0.1', port: 0 }]);
  await relay.start();
  const { p1 } = await ports.start();
  const cfg = parsePlainConfig(await addDevice(cp.store, cp.keys, crypto, { id: 'plain-1', mac: '02:00:00:00:00:02', kind: 'plaintext', broker: cp.brokerUrl, relay: 'relay-1', port: 'p1' }));
  const sock = await connectToPort('127.0.0.1', p1!);
  let plainGot: (vpn: string, peer: string, b: Uint8Array) => void = () => {};
  const plain = new PlaintextAgent(cfg, { write: (b) => void sock.write(b) }, { onData: (v, p, b) => plainGot(v, p, b) });
  sock.on('data', (d: Buffer) => plain.input(new Uint8Array(d)));
  await plain.configure();
  await plain.join('bench', 'bench-password');
  let termGot: () => void = () => {};
  const term = new TerminalAgent(await mk('term-a', 'terminal', '02:00:00:00:00:03'), nodePlatform({ brokerUrl: cp.brokerUrl }), { onData: () => termGot() });
  await term.start();
  await term.configure();
  await term.join('bench', 'bench-password');
  const r = await measure(
    (b) => term.send('plant', 'plain-1', b),
    (cb) => {
      plainGot = (v, p, b) => (b.length === 64 ? plain.send(v, p, b) : undefined);
      termGot = cb;
    },
    (cb) => (plainGot = () => cb()),
  );
  await term.stop();
  sock.destroy();
  await ports.stop();
  await relay.stop();
  await close();
  return r;
}

async function floorRun(): Promise<Result> {
  const broker = await floorBroker();
  const a = noDelay(await mqtt.connectAsync(broker.url, { clientId: 'floor-a' }));
  const b = noDelay(await mqtt.connectAsync(broker.url, { clientId: 'floor-b' }));
  await a.subscribeAsync('floor/a', { qos: 1 });
  await b.subscribeAsync('floor/b', { qos: 1 });
  let onB: (p: Buffer) => void = () => {};
  let onA: () => void = () => {};
  b.on('message', (_t, p) => onB(p));
  a.on('message', () => onA());
  const r = await measure(
    (m) => a.publishAsync('floor/b', Buffer.from(m), { qos: 1 }).then(() => undefined),
    (cb) => {
      onB = (p) => void (p.length === 64 && b.publish('floor/a', p, { qos: 1 }));
      onA = cb;
    },
    (cb) => (onB = () => cb()),
  );
  await a.endAsync();
  await b.endAsync();
  await broker.close();
  return r;
}

const floor = await floorRun();
const kagi = await kagiRun();
const row = (name: string, r: Result) => console.log(`  ${name.padEnd(34)} p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  ${r.mbps.toFixed(2)} MB/s`);
console.log(`relay path, ${N} messages`);
row('bare MQTT floor (plain aedes)', floor);
row('terminal → relay → plaintext', kagi);
console.log(`  ratio kagi/floor: p50 ${(kagi.p50 / floor.p50).toFixed(2)}x  p99 ${(kagi.p99 / floor.p99).toFixed(2)}x  throughput ${(kagi.mbps / floor.mbps).toFixed(2)}x`);
process.exit(0);
