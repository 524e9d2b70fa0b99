/**
 * bench/relay: the data plane beside bare MQTT, in one process, in the same run.
 *
 * Three paths, each warmed up before anything is measured (the floor too:
 * it used to run cold first and looked slower than it is), then each figure
 * measured on the three back to back:
 *   floor     two plain MQTT clients on plain aedes (no crypto, no kagi);
 *   t2t       terminal → terminal, two terminal agents in one VPN;
 *   relay     terminal → relay → plaintext terminal (embodiment 2).
 * For each path and each size (64 B, 1 KiB, 16 KiB):
 *   latency   the one-at-a-time probe: send, wait for the echo (p50/p99);
 *   MB/s      one frame at a time (the next is sent on the PUBACK of the
 *             last; what this bench measured before issue 22), and a
 *             windowed sender (`--window` frames in flight, each awaited
 *             to its PUBACK), both until every frame has arrived;
 *   MB/cpu-s  the windowed sender's bytes per CPU-second of this process:
 *             what a frame costs, steady on a machine others are loading.
 * Several runs (`--runs`); each run builds every path fresh, and the ratio
 * kagi/floor is taken within a run (the machine is shared and noisy).
 *
 *   npm run bench:relay -- --n 2000 --runs 3
 *   KAGI_BENCH_JSON=1 npm run bench:relay     # also one line BENCH_JSON [rows]
 */
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { addDevice } from '../servers/admin.js';
import { benchControlPlane, benchJson, cpuMsSince, floorBroker, noDelay, positiveArg, type BenchRow } from './common.js';
import { parseBundle } from '../device/bundle.js';
import { TerminalAgent } from '../device/terminal.js';
import { RelayAgent } from '../device/relay.js';
import { PlaintextAgent, parsePlainConfig } from '../device/plaintext.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { TcpRelayPorts, connectToPort } from '../runtime/node/relay-ports.js';

const HELP = `bench:relay — the VPN data plane beside bare MQTT (docs/performance.md, "Data plane")

  npm run bench:relay -- [--n FRAMES] [--probe N] [--window W] [--runs R] [--warmup N] [--sizes LIST] [--only PATH]

  --n FRAMES   frames per size for the windowed throughput (default 2000)
  --probe N    round trips per size for the latency probe (default 300)
  --window W   frames in flight in the windowed sender (default 32)
  --runs R     runs, each with fresh paths; ratios are taken within a run (default 3)
  --warmup N   frames of warm-up per path before it is measured (default 1000)
  --sizes LIST frame sizes in bytes, comma-separated (default 64,1024,16384)
  --only PATH  measure one path alone (floor, t2t or relay), one run, no ratios: for node --cpu-prof
  --help       this text

Env KAGI_BENCH_JSON=1: also print one line "BENCH_JSON [rows]" for the bench runner.`;

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '2000' },
    probe: { type: 'string', default: '300' },
    window: { type: 'string', default: '32' },
    runs: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1000' },
    only: { type: 'string' },
    sizes: { type: 'string', default: '64,1024,16384' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const positive = (name: string, v: string) => positiveArg('bench:relay', name, v);
const N = positive('n', values.n);
const PROBE = positive('probe', values.probe);
const WINDOW = positive('window', values.window);
const RUNS = positive('runs', values.runs);
const WARMUP = positive('warmup', values.warmup);
const SIZES = values.sizes.split(',').map((x) => positive('sizes', x.trim()));
const ONLY = values.only;
if (ONLY !== undefined && !['floor', 't2t', 'relay'].includes(ONLY)) {
  console.error(`--only must be floor, t2t or relay, not ${JSON.stringify(ONLY)}`);
  process.exit(2);
}
/** A path that has not delivered everything by then has lost frames: say so rather than hang. */
const STALL_MS = 120_000;

/** One direction A → B, with B able to answer (the echo of the latency probe). */
interface Path {
  send(b: Uint8Array): Promise<void>;
  echo(b: Uint8Array): void;
  atB: (b: Uint8Array) => void;
  atA: (b: Uint8Array) => void;
  close(): Promise<void>;
}

interface Figures {
  /** By size: p50/p99 round trip (ms), one-way MB/s one frame at a time (seq) and windowed. */
  [size: number]: { p50: number; p99: number; seq: number; mbps: number; cpu: number };
}

function stalled<T>(p: Promise<T>, what: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`stalled: ${what()}`)), STALL_MS)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

async function latency(path: Path, n: number, size: number): Promise<{ p50: number; p99: number }> {
  const payload = new Uint8Array(size).fill(5);
  const rtts: number[] = [];
  path.atB = (b) => path.echo(b);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await stalled(
      new Promise<void>((r) => {
        path.atA = () => r();
        path.send(payload).catch((e: Error) => console.error(`probe send: ${e.message}`));
      }),
      () => `echo ${i} of ${n} (${size} B)`,
    );
    rtts.push(performance.now() - t0);
  }
  rtts.sort((a, b) => a - b);
  return { p50: rtts[Math.floor(n * 0.5)]!, p99: rtts[Math.min(n - 1, Math.floor(n * 0.99))]! };
}

/**
 * Keep `window` sends in flight until n are sent: MB/s until the last has
 * arrived, and MB per CPU-second of this process (every thread, user and
 * system) over the same time. Broker, agents and control plane all run in
 * this process, so the second is what the path costs, whatever else the
 * machine is doing; wall-clock MB/s is what it delivers here and now.
 */
async function windowed(path: Path, n: number, size: number, window: number): Promise<{ mbps: number; cpu: number }> {
  const payload = new Uint8Array(size).fill(7);
  let arrived = 0;
  let allArrived!: () => void;
  const all = new Promise<void>((r) => (allArrived = r));
  path.atB = () => void (++arrived === n && allArrived());
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const sent = new Promise<void>((resolve, reject) => {
    let started = 0;
    let inFlight = 0;
    const pump = (): void => {
      while (inFlight < window && started < n) {
        started++;
        inFlight++;
        path.send(payload).then(() => {
          inFlight--;
          if (started === n && inFlight === 0) resolve();
          else pump();
        }, reject);
      }
    };
    pump();
  });
  await stalled(Promise.all([sent, all]), () => `${arrived} of ${n} frames of ${size} B arrived`);
  const seconds = (performance.now() - t0) / 1000;
  return { mbps: (n * size) / seconds / 1e6, cpu: (n * size) / (cpuMsSince(cpu0) / 1000) / 1e6 };
}

async function warmUp(path: Path): Promise<void> {
  // JIT, buffers, the broker's and the agents' first-time paths.
  await latency(path, Math.min(100, WARMUP), 64);
  for (const size of SIZES) await windowed(path, Math.max(1, Math.floor(WARMUP / SIZES.length)), size, WINDOW);
}

/**
 * Every path warmed up, then each figure measured on every path back to
 * back (floor, t2t, relay for one size and one sender, then the next), so
 * that a ratio compares measurements seconds apart, not a minute: other
 * load on a shared machine then weighs on both sides alike.
 */
async function measureAll(paths: Path[]): Promise<Figures[]> {
  for (const p of paths) await warmUp(p);
  const out: Figures[] = paths.map(() => ({}));
  for (const size of SIZES) {
    for (const [i, p] of paths.entries()) out[i]![size] = { ...(await latency(p, PROBE, size)), seq: 0, mbps: 0, cpu: 0 };
    for (const [i, p] of paths.entries()) out[i]![size]!.seq = (await windowed(p, N, size, 1)).mbps;
    for (const [i, p] of paths.entries()) Object.assign(out[i]![size]!, await windowed(p, N, size, WINDOW));
  }
  return out;
}

async function floorPath(): Promise<Path> {
  const broker = await floorBroker();
  const a = noDelay(await mqtt.connectAsync(broker.url, { clientId: 'floor-a' }));
  const b = noDelay(await mqtt.connectAsync(broker.url, { clientId: 'floor-b' }));
  await a.subscribeAsync('floor/a', { qos: 1 });
  await b.subscribeAsync('floor/b', { qos: 1 });
  const path: Path = {
    send: (m) => a.publishAsync('floor/b', Buffer.from(m.buffer, m.byteOffset, m.length), { qos: 1 }).then(() => undefined),
    echo: (m) => void b.publish('floor/a', Buffer.from(m.buffer, m.byteOffset, m.length), { qos: 1 }),
    atA: () => {},
    atB: () => {},
    close: async () => {
      await a.endAsync();
      await b.endAsync();
      await broker.close();
    },
  };
  a.on('message', (_t, p) => path.atA(p));
  b.on('message', (_t, p) => path.atB(p));
  return path;
}

/** One control plane with VPN 'plant': term-a and term-b (t2t), and relay-1 with plain-1 on its port p1. */
async function kagiPaths(): Promise<{ t2t: Path; relay: Path; close(): Promise<void> }> {
  const { cp, crypto, close } = await benchControlPlane();
  const mk = async (id: string, kind: 'terminal' | 'relay', mac: string) => parseBundle(await addDevice(cp.store, cp.keys, crypto, { id, mac, kind, broker: cp.brokerUrl }));
  const relay = new RelayAgent(await mk('relay-1', 'relay', '02:00:00:00:00:01'), ['p1'], nodePlatform({ brokerUrl: cp.brokerUrl }));
  const ports = new TcpRelayPorts(relay, [{ name: 'p1', kind: 'tcp', host: '127.0.0.1', port: 0 }]);
  await relay.start();
  const { p1 } = await ports.start();
  const cfg = parsePlainConfig(await addDevice(cp.store, cp.keys, crypto, { id: 'plain-1', mac: '02:00:00:00:00:02', kind: 'plaintext', broker: cp.brokerUrl, relay: 'relay-1', port: 'p1' }));
  const sock = await connectToPort('127.0.0.1', p1!);
  const relayPath: Path = {
    send: (b) => termA.send('plant', 'plain-1', b),
    echo: (b) => plain.send('plant', 'term-a', b),
    atA: () => {},
    atB: () => {},
    close: async () => {},
  };
  const plain = new PlaintextAgent(cfg, { write: (b) => void sock.write(b) }, { onData: (_v, _p, b) => relayPath.atB(b) });
  sock.on('data', (d: Buffer) => plain.input(new Uint8Array(d.buffer, d.byteOffset, d.length)));
  await plain.configure();
  await plain.join('bench', 'bench-password');
  const t2t: Path = {
    send: (b) => termA.send('plant', 'term-b', b),
    echo: (b) => void termB.send('plant', 'term-a', b).catch((e: Error) => console.error(`echo: ${e.message}`)),
    atA: () => {},
    atB: () => {},
    close: async () => {},
  };
  // term-a hears echoes from term-b (t2t) and from plain-1 (relay).
  const termA = new TerminalAgent(await mk('term-a', 'terminal', '02:00:00:00:00:03'), nodePlatform({ brokerUrl: cp.brokerUrl }), {
    onData: (_v, from, b) => (from === 'term-b' ? t2t.atA(b) : relayPath.atA(b)),
  });
  const termB = new TerminalAgent(await mk('term-b', 'terminal', '02:00:00:00:00:04'), nodePlatform({ brokerUrl: cp.brokerUrl }), { onData: (_v, _f, b) => t2t.atB(b) });
  for (const t of [termA, termB]) {
    await t.start();
    await t.configure();
    await t.join('bench', 'bench-password');
  }
  return {
    t2t,
    relay: relayPath,
    close: async () => {
      await termA.stop();
      await termB.stop();
      sock.destroy();
      await ports.stop();
      await relay.stop();
      await close();
    },
  };
}

interface Run {
  floor: Figures;
  t2t: Figures;
  relay: Figures;
}

const line = (name: string, f: Figures) =>
  `  ${name.padEnd(30)}` + SIZES.map((s) => `${String(s).padStart(5)} B: p50 ${f[s]!.p50.toFixed(2)} p99 ${f[s]!.p99.toFixed(2)} ms ${f[s]!.seq.toFixed(1).padStart(5)} / ${f[s]!.mbps.toFixed(1).padStart(5)} MB/s`).join(' |');

if (ONLY) {
  // One path alone, so that a CPU profile holds nothing else.
  const k = ONLY === 'floor' ? null : await kagiPaths();
  const fp = k ? null : await floorPath();
  const path = fp ?? (ONLY === 't2t' ? k!.t2t : k!.relay);
  console.log(line(ONLY, (await measureAll([path]))[0]!));
  await (fp ?? k!).close();
  process.exit(0);
}

const runs: Run[] = [];
for (let r = 0; r < RUNS; r++) {
  const fp = await floorPath();
  const k = await kagiPaths();
  const [floor, t2t, relay] = await measureAll([fp, k.t2t, k.relay]);
  await fp.close();
  await k.close();
  runs.push({ floor: floor!, t2t: t2t!, relay: relay! });
  console.log(`run ${r + 1} of ${RUNS} (${N} frames per size, MB/s one at a time / window ${WINDOW}; latency probe ${PROBE} round trips)`);
  console.log(line('bare MQTT floor (plain aedes)', floor!));
  console.log(line('terminal → terminal', t2t!));
  console.log(line('terminal → relay → plaintext', relay!));
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const range = (xs: number[], d: number) => `${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}`;

/** The targets (issue 22): throughput ratios for 16 KiB frames. */
const TARGETS: Record<string, Record<number, number>> = { t2t: { [16 * 1024]: 0.8 }, relay: { [16 * 1024]: 0.7 } };

const rows: BenchRow[] = [];
console.log(`\nover ${RUNS} runs (median; range of the per-run ratio)`);
console.log(`  ${'figure'.padEnd(60)} ${'kagi'.padStart(8)} ${'floor'.padStart(8)}       ratio kagi/floor (range)   target`);
for (const path of ['t2t', 'relay'] as const) {
  const label = path === 't2t' ? 'terminal→terminal' : 'terminal→relay→plaintext';
  for (const size of SIZES) {
    const want = TARGETS[path]![size];
    const add = (figure: string, unit: string, pick: (f: Figures) => number, goal: number | undefined, d: number): void => {
      const ratios = runs.map((r) => pick(r[path]) / pick(r.floor));
      const ratio = median(ratios);
      const row: BenchRow = {
        figure,
        value: median(runs.map((r) => pick(r[path]))),
        unit,
        floor: median(runs.map((r) => pick(r.floor))),
        ratio,
        target: goal ? `≥ ${goal}` : 'none',
        met: goal ? ratio >= goal : true,
      };
      rows.push(row);
      const head = `  ${figure.padEnd(60)} ${row.value.toFixed(d).padStart(8)} ${row.floor.toFixed(d).padStart(8)} ${unit.padEnd(8)} ${ratio.toFixed(2)} (${range(ratios, 2)})`;
      console.log(goal ? `${head.padEnd(113)} ${row.target} ${row.met ? 'met' : 'NOT met'}` : head);
    };
    add(`${label} ${size} B one at a time`, 'MB/s', (f) => f[size]!.seq, want, 1);
    add(`${label} ${size} B window ${WINDOW}`, 'MB/s', (f) => f[size]!.mbps, want, 1);
    add(`${label} ${size} B window ${WINDOW} per CPU-second`, 'MB/cpu-s', (f) => f[size]!.cpu, want, 1);
    add(`${label} ${size} B round trip p50`, 'ms', (f) => f[size]!.p50, undefined, 2);
  }
}
benchJson(rows);
process.exit(0);
