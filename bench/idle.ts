/**
 * bench/idle: what an idle joined device costs the server in memory. N
 * devices (the real agent, each with its own MQTT connection and its own
 * state and ticket files) join `kagi up` running in its own process, then
 * sit idle; the server's RSS after a forced GC, minus its RSS before the
 * other devices came (the first min(200, N/10) are a warm-up), divided by
 * the devices that came since, is the figure. Beside it the floor,
 * measured in the same run the same way: N bare MQTT clients (the same
 * keepalive, three subscriptions each as an agent has) connected and idle
 * on plain aedes in its own process, so the ratio shows what kagi adds over
 * the broker itself.
 *
 * Both servers run with --expose-gc and bench/memory-probe.js preloaded: a
 * SIGUSR2 makes them collect garbage and print their memory. Each run starts
 * both servers afresh (the floor first, then kagi up on a copy of the
 * seeded data dir); --runs 3 gives three independent figures and the median
 * is reported. --heap-snapshot DIR writes heap snapshots of both servers
 * after the warm-up and after the idle (bench/heap-diff.ts: what grows per
 * device).
 *
 * --broker mosquitto: the connections are held by a Mosquitto this bench
 * starts for each run (anonymous, no persistence, on a free loopback port)
 * and `kagi up --broker` runs only the services (decision 111). Then kagi
 * up's growth is the services' own per-device state; the Mosquitto's
 * growth (its RSS from /proc) is printed beside it, and the target is
 * judged on the two together. The floor is the same bare clients on a
 * fresh Mosquitto of the same configuration.
 *
 * --tickets: the devices join once with their passwords before the runs,
 * against a kagi up of their own on the template, and join on their
 * resumption tickets in the runs: the measured server never runs scrypt,
 * whose 16 MiB per hash on the libuv pool's threads leaves allocator
 * arenas behind that a fleet restarting on tickets never pays.
 *
 *   npm run bench:idle -- --n 2000 --idle 30 --runs 3 [--broker embedded|mosquitto] [--tickets]
 */
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import mqtt from 'mqtt';
import type { Bundle } from '../device/bundle.js';
import { TerminalAgent } from '../device/terminal.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { benchJson, median, noDelay, pool, positiveArg, progressLine, seedFleet, type BenchRow } from './common.js';
import { eachLine } from './child-lines.js';
import { Mosquitto } from './mosquitto.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '2000' },
    idle: { type: 'string', default: '30' },
    runs: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '100' },
    'heap-snapshot': { type: 'string' },
    broker: { type: 'string', default: 'embedded' },
    tickets: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run bench:idle -- [--n 2000] [--idle 30] [--runs 3] [--concurrency 100] [--heap-snapshot DIR] [--broker embedded|mosquitto]
  --n N               devices, each with its own MQTT connection (default 2000)
  --idle S            seconds the devices sit idle before each measure: once halfway,
                      once at N (default 30; the second half's growth is printed too)
  --runs R            independent runs, each with fresh servers; the median is reported (default 3)
  --concurrency C     joins at a time while the devices come (default 100)
  --heap-snapshot DIR write heap snapshots of both servers (after the warm-up and after
                      the idle) to DIR in the first run, whose figures then include them;
                      node dist/bench/heap-diff.js compares two
  --broker B          embedded (default): kagi up holds the connections in its own aedes;
                      mosquitto: a Mosquitto started for each run holds them and kagi up
                      runs with --broker (its RSS and the Mosquitto's are both printed)
  --tickets           every device joins once with its password before the runs (a kagi up
                      of its own), and in the runs on its resumption ticket: no scrypt runs
                      in the measured server, as after a fleet's restart`);
  process.exit(0);
}
const positive = (name: string, v: string) => positiveArg('bench:idle', name, v);
const N = positive('n', values.n);
const IDLE_S = positive('idle', values.idle);
const RUNS = positive('runs', values.runs);
const CONCURRENCY = positive('concurrency', values.concurrency);
if (values.broker !== 'embedded' && values.broker !== 'mosquitto') {
  console.error(`bench:idle: --broker must be embedded or mosquitto, not ${values.broker}`);
  process.exit(2);
}
const ON_MOSQUITTO = values.broker === 'mosquitto';
const TICKETS = values.tickets;
const TARGET_KIB = 4;
/**
 * The first devices are the warm-up: the baseline is probed after them, so
 * what a process pays once (compiled code, the heap's first pages, caches
 * filled) is not spread over the devices. The figure is the growth from
 * there to N, over N − WARM; the growth from halfway (HALF) to N is printed
 * beside it.
 */
const WARM = Math.min(200, Math.floor(N / 10));
const probe = pathToFileURL(resolve('dist/bench/memory-probe.js')).href;

/** As bench/memory-probe.ts prints it (bytes). */
interface Memory { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number; malloc: number; anon: number; files: number }

/** A server child with the memory probe preloaded; resolves once its stdout matches `ready`. */
class Server {
  private waiting: ((m: Memory) => void) | null = null;
  private constructor(readonly child: ChildProcess, readonly url: string) {}

  static start(args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}): Promise<Server> {
    const child = spawn(process.execPath, ['--expose-gc', '--import', probe, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    return new Promise((resolveStart, reject) => {
      let server: Server | undefined;
      eachLine(child.stdout!, (line) => {
        if (!server) {
          const m = ready.exec(line);
          if (m) resolveStart((server = new Server(child, m[1]!)));
        } else server.line(line);
      });
      child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}`)));
    });
  }

  private line(l: string): void {
    if (!l.startsWith('memory-probe ') || !this.waiting) return;
    const w = this.waiting;
    this.waiting = null;
    w(JSON.parse(l.slice('memory-probe '.length)) as Memory);
  }

  /** GC in the server, then its memory. */
  memory(): Promise<Memory> {
    return new Promise((res, reject) => {
      const t = setTimeout(() => reject(new Error('memory probe: no answer in 120 s')), 120_000);
      this.waiting = (m) => (clearTimeout(t), res(m));
      this.child.kill('SIGUSR2');
    });
  }

  stop(): Promise<void> {
    return new Promise((r) => {
      if (this.child.exitCode !== null) return r();
      this.child.once('exit', () => r());
      this.child.kill('SIGTERM');
    });
  }
}


const progress = (what: string, done: number) => progressLine(what, done, N, 500);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


/** Per-device growth of each figure between two probes (bytes), over the `n` devices that came between them. */
function perDevice(before: Memory, after: Memory, n: number): Memory {
  const per = (k: keyof Memory) => (after[k] - before[k]) / n;
  return { rss: per('rss'), heapUsed: per('heapUsed'), heapTotal: per('heapTotal'), malloc: per('malloc'), anon: per('anon'), files: per('files'), external: per('external'), arrayBuffers: per('arrayBuffers') };
}

/** Something whose memory can be read: a Node server (after a GC) or a Mosquitto. */
interface Probed { memory(): Promise<Memory> }

/** A Mosquitto's memory: only its RSS (the rest is Node's). */
const mosquittoProbe = (m: Mosquitto): Probed => ({ memory: async () => ({ rss: m.rss(), heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0, malloc: 0, anon: 0, files: 0 }) });

/** Devices at the middle probe: the growth from there to N is the second half's. */
const HALF = Math.floor((WARM + N) / 2);

/**
 * Each server's growth per device from the end of the warm-up to N devices
 * added by `add` and idle for --idle seconds (`whole`, the figure judged),
 * and over the second half alone (`half`: from HALF devices, idle as long,
 * to N). Bounded costs that fill while a fleet first arrives (SQLite's page
 * cache, V8's young generation grown by the join bursts) are in the whole
 * growth and mostly spent by the middle, so the second half's is closer to
 * what one more device costs.
 */
async function idleGrowth(servers: Probed[], add: (i: number) => Promise<void>): Promise<{ whole: Memory[]; half: Memory[] }> {
  const probeAll = () => Promise.all(servers.map((s) => s.memory()));
  await pool(0, WARM, CONCURRENCY, add);
  const before = await probeAll();
  await pool(WARM, HALF, CONCURRENCY, add);
  await sleep(IDLE_S * 1000);
  const middle = await probeAll();
  await pool(HALF, N, CONCURRENCY, add);
  await sleep(IDLE_S * 1000);
  const after = await probeAll();
  return { whole: servers.map((_, i) => perDevice(before[i]!, after[i]!, N - WARM)), half: servers.map((_, i) => perDevice(middle[i]!, after[i]!, N - HALF)) };
}

/** Heap snapshots in the first run only (they cost memory themselves: that run's figures include them). */
function snapshotEnv(run: number): NodeJS.ProcessEnv {
  return values['heap-snapshot'] && run === 1 ? { KAGI_HEAP_SNAPSHOT_DIR: values['heap-snapshot'] } : {};
}

/** A server's growth per device: over the whole fleet and over its second half. */
interface Growth { whole: Memory; half: Memory }

async function floorRun(run: number): Promise<Growth> {
  const mosquitto = ON_MOSQUITTO ? await Mosquitto.start() : undefined;
  const server = mosquitto ? undefined : await Server.start(['dist/bench/floor-server.js'], /floor: (\S+)/, snapshotEnv(run));
  const url = mosquitto?.url ?? server!.url;
  const clients: mqtt.MqttClient[] = [];
  try {
    let done = 0;
    const connect = async (i: number) => {
      const c = noDelay(await mqtt.connectAsync(url, { clientId: `idle-${i}`, keepalive: 30, reconnectPeriod: 0, connectTimeout: 120_000 }));
      clients.push(c);
      await c.subscribeAsync([`floor/dev/${i}`, `floor/vpn/${i}`, 'floor/vpn/all'], { qos: 1 });
      progress('floor clients connected', ++done);
    };
    const g = await idleGrowth([mosquitto ? mosquittoProbe(mosquitto) : server!], connect);
    return { whole: g.whole[0]!, half: g.half[0]! };
  } finally {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await server?.stop();
    await mosquitto?.stop();
  }
}

/** kagi up's growth per device, and (on Mosquitto) the Mosquitto's that holds the connections. */
/** kagi up on `data` (its own aedes, or the connections on `brokerUrl`), ready. */
function startKagiUp(data: string, brokerUrl: string | undefined, env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const where = brokerUrl ? ['--broker', brokerUrl] : ['--port', '0'];
  return Server.start(['dist/cli/kagi.js', 'up', '--data', data, ...where, '--timeout', '60s', '--log-format', 'json'], /kagi up: broker (\S+),/, env);
}

/** A joiner of device i: the real agent with its state and ticket files in `files`, on its ticket when it holds one. */
function joiner(url: string, files: string, bundles: Bundle[], agents: TerminalAgent[], password: string | undefined, what: string): (i: number) => Promise<void> {
  let joined = 0;
  return async (i) => {
    const b = bundles[i]!;
    const platform = nodePlatform({ brokerUrl: url, stateFile: join(files, `${b.id}.state`), secretsFile: join(files, `${b.id}.tickets`) });
    const a = new TerminalAgent(b, platform, { timeoutMs: 60_000, attempts: Infinity });
    agents.push(a);
    await a.start();
    // No config request, first join or on its ticket, as kagi agent does (decisions 122, 138).
    await a.join('bench', password);
    progress(what, ++joined);
  };
}

/** --tickets: every device joins once with its password (a kagi up of its own on the template), and keeps its ticket in `files`. */
async function primeTickets(template: string, files: string, bundles: Bundle[]): Promise<void> {
  const server = await startKagiUp(template, undefined);
  const agents: TerminalAgent[] = [];
  try {
    await pool(0, N, CONCURRENCY, joiner(server.url, files, bundles, agents, 'bench-password', 'first joins (password, before the runs)'));
  } finally {
    await Promise.all(agents.map((a) => a.stop({ leave: false })));
    await server.stop();
  }
}

async function kagiRun(template: string, ticketFiles: string | undefined, run: number, bundles: Bundle[]): Promise<{ kagi: Growth; mosquitto?: Growth }> {
  const dir = mkdtempSync(join(tmpdir(), 'kagi-idle-run-'));
  const data = join(dir, 'data');
  const files = join(dir, 'devices');
  cpSync(template, data, { recursive: true });
  if (ticketFiles) cpSync(ticketFiles, files, { recursive: true });
  else mkdirSync(files);
  const mosquitto = ON_MOSQUITTO ? await Mosquitto.start() : undefined;
  const server = await startKagiUp(data, mosquitto?.url, snapshotEnv(run));
  const agents: TerminalAgent[] = [];
  try {
    const join1 = joiner(server.url, files, bundles, agents, ticketFiles ? undefined : 'bench-password', ticketFiles ? 'devices joined (tickets)' : 'devices joined');
    const g = await idleGrowth(mosquitto ? [server, mosquittoProbe(mosquitto)] : [server], join1);
    return { kagi: { whole: g.whole[0]!, half: g.half[0]! }, ...(mosquitto ? { mosquitto: { whole: g.whole[1]!, half: g.half[1]! } } : {}) };
  } finally {
    await Promise.all(agents.map((a) => a.stop({ leave: false })));
    await server.stop();
    await mosquitto?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const kib = (b: number) => `${(b / 1024).toFixed(2)} KiB`;
const mappings = (m: Memory) => `${kib(m.malloc)} / ${kib(m.anon)} / ${kib(m.files)}`;
const root = mkdtempSync(join(tmpdir(), 'kagi-idle-'));
const template = join(root, 'data');
try {
  const bundles = await seedFleet(template, N, (i) => `i${i}`, (done) => progress('registering', done));
  const ticketFiles = TICKETS ? join(root, 'devices') : undefined;
  if (ticketFiles) {
    mkdirSync(ticketFiles);
    await primeTickets(template, ticketFiles, bundles);
  }
  const broker = ON_MOSQUITTO ? 'the connections held by a Mosquitto of its own per run (kagi up --broker), the floor bare clients on one' : 'kagi up (SQLite, embedded aedes) and the floor (plain aedes) each in its own process';
  console.log(`idle: ${N} devices joined${TICKETS ? ' on their tickets' : ''}, each its own MQTT connection, idle ${IDLE_S} s; ${broker}; RSS after a forced GC, growth from device ${WARM} (after the warm-up) to ${N}`);
  const kagiRss: number[] = [];
  const totalRss: number[] = [];
  const floorRss: number[] = [];
  const breakdown: { k: string; f: string }[] = [];
  const halfRss: { kagi: number; total: number; floor: number }[] = [];
  for (let run = 1; run <= RUNS; run++) {
    // The floor first, then kagi: never both servers' N sockets at once (fd limit).
    const fg = await floorRun(run);
    const { kagi: kg, mosquitto: mg } = await kagiRun(template, ticketFiles, run, bundles);
    const [f, k, m] = [fg.whole, kg.whole, mg?.whole];
    floorRss.push(f.rss);
    breakdown.push({ k: mappings(k), f: mappings(f) });
    kagiRss.push(k.rss);
    totalRss.push(k.rss + (m?.rss ?? 0));
    halfRss.push({ kagi: kg.half.rss, total: kg.half.rss + (mg?.half.rss ?? 0), floor: fg.half.rss });
    console.log(`run ${run}:`);
    console.log(`  kagi up per device: RSS ${kib(k.rss)}  (heap used ${kib(k.heapUsed)} of ${kib(k.heapTotal)} committed, external ${kib(k.external)}, of which array buffers ${kib(k.arrayBuffers)})`);
    if (m) console.log(`  its Mosquitto per device: RSS ${kib(m.rss)}; together ${kib(k.rss + m.rss)}`);
    if (ON_MOSQUITTO) console.log(`  floor per client (Mosquitto RSS): ${kib(f.rss)}`);
    else console.log(`  floor per client:   RSS ${kib(f.rss)}  (heap used ${kib(f.heapUsed)} of ${kib(f.heapTotal)} committed, external ${kib(f.external)}, of which array buffers ${kib(f.arrayBuffers)})`);
    console.log(`  ratio kagi/floor (RSS${ON_MOSQUITTO ? ', kagi up and its Mosquitto together' : ''}): ${(totalRss[run - 1]! / f.rss).toFixed(2)}x`);
    console.log(`  the second half alone (devices ${HALF} to ${N}): kagi up RSS ${kib(kg.half.rss)} (heap used ${kib(kg.half.heapUsed)}; malloc / anonymous / files ${mappings(kg.half)})${mg ? `, its Mosquitto ${kib(mg.half.rss)}` : ''}; floor ${kib(fg.half.rss)}`);
  }
  const k = median(kagiRss);
  const total = median(totalRss);
  const f = median(floorRss);
  console.log(`median of ${RUNS}: kagi ${kib(k)} per device${ON_MOSQUITTO ? `, with its Mosquitto ${kib(total)}` : ''}, floor ${kib(f)} per client, ratio ${(total / f).toFixed(2)}x (target: ≤ ${TARGET_KIB} KiB per device)`);
  if (!ON_MOSQUITTO) {
    console.log('RSS per device by mapping (malloc arena / anonymous: V8 heap pages and large allocations / files) in each run:');
    for (const [i, m] of breakdown.entries()) console.log(`  run ${i + 1}: kagi ${m.k}; floor ${m.f}`);
  } else {
    console.log('kagi up RSS per device by mapping (malloc arena / anonymous / files) in each run:');
    for (const [i, m] of breakdown.entries()) console.log(`  run ${i + 1}: ${m.k}`);
  }
  const half = { kagi: median(halfRss.map((h) => h.kagi)), total: median(halfRss.map((h) => h.total)), floor: median(halfRss.map((h) => h.floor)) };
  console.log(`second half alone, median of ${RUNS}: kagi ${kib(half.kagi)} per device${ON_MOSQUITTO ? `, with its Mosquitto ${kib(half.total)}` : ''}, floor ${kib(half.floor)} (what one more device costs once the bounded caches have filled; the target is judged on the whole growth above)`);
  const rows: BenchRow[] = ON_MOSQUITTO
    ? [
      { figure: `kagi up RSS per idle joined device, connections on Mosquitto (N=${N})`, value: k / 1024, unit: 'KiB', floor: f / 1024, ratio: k / f, target: 'none (reported)', met: true },
      { figure: `kagi up + its Mosquitto RSS per idle joined device (N=${N})`, value: total / 1024, unit: 'KiB', floor: f / 1024, ratio: total / f, target: `≤ ${TARGET_KIB} KiB`, met: total / 1024 <= TARGET_KIB },
    ]
    : [{ figure: `server RSS per idle joined device (N=${N})`, value: k / 1024, unit: 'KiB', floor: f / 1024, ratio: k / f, target: `≤ ${TARGET_KIB} KiB`, met: k / 1024 <= TARGET_KIB }];
  benchJson(rows);
} finally {
  rmSync(root, { recursive: true, force: true });
}
process.exit(0);
