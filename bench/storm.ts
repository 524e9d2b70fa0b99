/**
 * bench/storm: a site loses power and comes back. N devices joined (the
 * real agent, each with its own MQTT connection and its own state and
 * ticket files) to `kagi up` running in its own process; then every agent
 * dies at once (no leave: the power went) and all N start again at once
 * from their files: connect, config request, join on their resumption
 * ticket (no password), keys. Prints the time until every device is back in
 * its VPN (p50, p99, max of each device's time from the restart) beside the
 * floor measured in the same run: N bare MQTT clients connecting at once to
 * plain aedes in its own process and making one request/response round
 * trip each.
 *
 * The first joins (the set-up, not measured) use a password whose scrypt
 * hash is cheap (N=1024): set-up in a minute rather than six. The storm
 * itself checks no password. Run --runs times (the first is a warm-up for
 * neither side: both run it, every run is printed).
 *
 * --broker mosquitto: the connections are held by a Mosquitto the bench
 * starts (anonymous, no persistence, its other settings Mosquitto's
 * defaults), `kagi up --broker` runs the services only, and the floor's
 * clients and responder use a second, fresh Mosquitto of the same
 * configuration (`--mosquitto-conf LINE` adds to both). Each run also
 * prints what each Mosquitto dropped for clients whose queue was full
 * ($SYS/broker/publish/messages/dropped).
 *
 *   npm run bench:storm -- --n 10000 --runs 3 [--broker embedded|mosquitto]
 */
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import type { Bundle } from '../device/bundle.js';
import { TerminalAgent } from '../device/terminal.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { benchJson, noDelay, percentile, pool, progressLine, seedFleet, type BenchRow } from './common.js';
import { Mosquitto } from './mosquitto.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '3' },
    'setup-concurrency': { type: 'string', default: '100' },
    'cpu-prof': { type: 'string' },
    broker: { type: 'string', default: 'embedded' },
    'mosquitto-conf': { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run bench:storm -- [--n 10000] [--runs 3] [--setup-concurrency 100] [--cpu-prof DIR] [--broker embedded|mosquitto]
  --n N                  devices (default 10000)
  --runs R               storms, the first a warm-up (default 3)
  --setup-concurrency C  first joins at a time during the set-up (default 100)
  --cpu-prof DIR         write a V8 CPU profile of kagi up to DIR
  --broker B             embedded (default): kagi up's own broker holds the connections;
                         mosquitto: a Mosquitto the bench starts holds them (kagi up --broker),
                         and the floor runs on a second one
  --mosquitto-conf LINE  a line added to both Mosquittos' configuration (repeatable), e.g.
                         'max_queued_messages 100000'
Env STORM_LOG=FILE keeps kagi up's verbose log; STORM_DEBUG=1 prints the agents' logs.`);
  process.exit(0);
}
if (values.broker !== 'embedded' && values.broker !== 'mosquitto') {
  console.error(`bench:storm: --broker must be embedded or mosquitto, not ${values.broker}`);
  process.exit(2);
}
const ON_MOSQUITTO = values.broker === 'mosquitto';
const N = Number(values.n);
const RUNS = Number(values.runs);



const progress = (what: string, done: number) => progressLine(what, done, N, 1000);

/** Counters of what kagi up dropped, refused, disconnected or evicted, by metric and labels. */
const TROUBLE = /^(kagi_(?:messages_dropped|broker_refused|broker_dropped|broker_disconnects|refusals|evictions|ticket_thefts)_total)(\{[^}]*\})? (\d+)/;
async function troubleCounts(url: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    for (const line of (await (await fetch(url)).text()).split('\n')) {
      const m = TROUBLE.exec(line);
      if (m && Number(m[3]) > 0) out.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
    }
  } catch (e) {
    console.log(`  (kagi up's metrics could not be read: ${(e as Error).message})`);
  }
  return out;
}

/** A child that prints `pattern` with a URL (and optionally a second) when ready. */
function startChild(args: string[], pattern: RegExp): Promise<{ child: ChildProcess; url: string; metrics?: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  // STORM_LOG=FILE keeps kagi up's log (what a tail waited for is in it).
  const log = process.env.STORM_LOG && args.includes('up') ? createWriteStream(process.env.STORM_LOG) : undefined;
  if (log) child.stdout!.pipe(log);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      if (out.length < 100_000) out += d;
      const m = pattern.exec(out);
      if (m) resolve({ child, url: m[1]!, ...(m[2] ? { metrics: m[2] } : {}) });
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out.slice(-2000)}`)));
  });
}

function stop(c: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (c.exitCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGTERM');
  });
}


function makeAgent(b: Bundle, url: string, files: string): TerminalAgent {
  const platform = nodePlatform({ ...(process.env.STORM_DEBUG ? { log: (l: string, m: string) => console.error(l, m) } : {}), brokerUrl: url, stateFile: join(files, `${b.id}.state`), secretsFile: join(files, `${b.id}.tickets`) });
  return new TerminalAgent(b, platform, { timeoutMs: 60_000, attempts: Infinity });
}

/** Every agent starts at once; each one's time from the start until it is back in its VPN (ms). */
async function kagiStorm(bundles: Bundle[], url: string, files: string): Promise<{ times: number[]; agents: TerminalAgent[] }> {
  const agents = bundles.map((b) => makeAgent(b, url, files));
  const t0 = performance.now();
  let done = 0;
  const times = await Promise.all(agents.map(async (a) => {
    await a.start();
    await a.configure();
    await a.join('bench'); // the ticket: no password given (an agent retries what is not a refusal, as kagi agent does)
    progress('back in the VPN', ++done);
    return performance.now() - t0;
  }));
  return { times, agents };
}

/** Power loss: every link dropped, nobody leaves. */
async function powerLoss(agents: TerminalAgent[]): Promise<void> {
  await Promise.all(agents.map((a) => a.stop({ leave: false })));
}

/** Floor clients that had to connect again (printed: the floor is then a little slower than it could be). */
let floorRetries = 0;

async function floorStorm(url: string): Promise<number[]> {
  const t0 = performance.now();
  const clients: mqtt.MqttClient[] = [];
  // A client whose connection the broker closed under the load tries
  // again, as the agents do (at 10,000 plain aedes closed a few, and the
  // floor's failure ended the bench): its time counts from the storm.
  const times = await Promise.all(Array.from({ length: N }, async (_, i) => {
    for (;;) {
      let c: mqtt.MqttClient | undefined;
      try {
        c = noDelay(await mqtt.connectAsync(url, { clientId: `floor-${i}`, reconnectPeriod: 0, connectTimeout: 120_000 }));
        clients.push(c);
        await c.subscribeAsync(`floor/res/${i}`, { qos: 1 });
        const got = new Promise<void>((r, reject) => (c!.once('message', () => r()), c!.once('close', () => reject(new Error('closed')))));
        await c.publishAsync(`floor/req/${i}`, Buffer.alloc(200), { qos: 1 });
        await got;
        return performance.now() - t0;
      } catch {
        c?.end(true);
        floorRetries++;
      }
    }
  }));
  await Promise.all(clients.map((c) => c.endAsync(true)));
  return times;
}

function summary(times: number[]): { p50: number; p99: number; max: number } {
  const s = [...times].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1]! };
}

const dir = mkdtempSync(join(tmpdir(), 'kagi-storm-'));
const data = join(dir, 'data');
const files = join(dir, 'devices');
mkdirSync(files);
let up: ChildProcess | undefined;
let floor: ChildProcess | undefined;
let kagiMosquitto: Mosquitto | undefined;
let floorMosquitto: Mosquitto | undefined;
try {
  const prof = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof']] : [];
  // The broker URL is known only once kagi up runs; devices are registered with a placeholder and told it.
  const bundles = await seedFleet(data, N, (i) => `s${i}`, (done) => progress('registering', done));
  kagiMosquitto = ON_MOSQUITTO ? await Mosquitto.start(values['mosquitto-conf']) : undefined;
  floorMosquitto = ON_MOSQUITTO ? await Mosquitto.start(values['mosquitto-conf']) : undefined;
  const where = kagiMosquitto ? ['--broker', kagiMosquitto.url] : ['--port', '0'];
  const started = await startChild([...prof, 'dist/cli/kagi.js', 'up', '--data', data, ...where, '--metrics-port', '0', '--timeout', '60s', '--log-format', 'json', ...(process.env.STORM_LOG ? ['--verbose'] : [])], /kagi up: broker (\S+),.*metrics (http:\/\/[^\s,"]+)/);
  up = started.child;
  const url = started.url;
  const metricsUrl = started.metrics!;
  let seen = new Map<string, number>();
  const fl = await startChild(['dist/bench/floor-server.js', ...(floorMosquitto ? ['--broker', floorMosquitto.url] : [])], /floor: (\S+)/);
  floor = fl.child;

  // Set-up: every device joins once with the password, and keeps the ticket.
  let joined = 0;
  let agents: TerminalAgent[] = [];
  await pool(0, N, Number(values['setup-concurrency']), async (i) => {
    const a = makeAgent(bundles[i]!, url, files);
    agents.push(a);
    await a.start();
    await a.configure();
    await a.join('bench', 'bench-password');
    progress('first joins (set-up)', ++joined);
  });

  let rows: BenchRow[] = [];
  console.log(`storm: ${N} devices, each its own MQTT connection, kagi up in its own process (SQLite)${ON_MOSQUITTO ? ' with the connections on a Mosquitto of its own (the floor on another)' : ''}, the agents in this one`);
  // Counted from here: the set-up's drops (first joins, 100 at a time) are not the storm's.
  const droppedBefore = { kagi: (await kagiMosquitto?.dropped()) ?? 0, floor: (await floorMosquitto?.dropped()) ?? 0 };
  for (let run = 1; run <= RUNS; run++) {
    await powerLoss(agents);
    // The floor first, while the agents are down: both sides' N sockets at once would pass the fd limit.
    const f = await floorStorm(fl.url);
    const from = process.hrtime.bigint() / 1000n;
    const k = await kagiStorm(bundles, url, files);
    // The profile covers set-up too: its samples carry the same monotonic clock (µs).
    if (prof.length) console.log(`  (profile window of run ${run}: ${from}..${process.hrtime.bigint() / 1000n} µs)`);
    agents = k.agents;
    const ks = summary(k.times);
    const fs = summary(f);
    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    console.log(`run ${run}${run === 1 ? ' (warm-up)' : ''}:`);
    console.log(`  kagi (connect, config, join on the ticket, keys): p50 ${s(ks.p50)}  p99 ${s(ks.p99)}  all back ${s(ks.max)}`);
    console.log(`  floor (connect, one round trip, bare MQTT):       p50 ${s(fs.p50)}  p99 ${s(fs.p99)}  all back ${s(fs.max)}${floorRetries ? `  (${floorRetries} clients connected again)` : ''}`);
    floorRetries = 0;
    console.log(`  ratio kagi/floor (all back): ${(ks.max / fs.max).toFixed(2)}x`);
    // What went wrong on the way, if anything (a device lost in a stage
    // waits out its timeout: a tail in p99 has its cause here).
    const now = await troubleCounts(metricsUrl);
    const news = [...now].filter(([k, v]) => v > (seen.get(k) ?? 0)).map(([k, v]) => `${k} ${v - (seen.get(k) ?? 0)}`);
    console.log(`  kagi up during the run: ${news.length ? news.join(', ') : 'nothing dropped, refused or evicted'}`);
    seen = now;
    if (kagiMosquitto && floorMosquitto) {
      const dropped = { kagi: await kagiMosquitto.dropped(), floor: await floorMosquitto.dropped() };
      console.log(`  messages the Mosquittos dropped (queues full): kagi's ${dropped.kagi - droppedBefore.kagi}, the floor's ${dropped.floor - droppedBefore.floor}`);
      Object.assign(droppedBefore, dropped);
    }
    // The last run's figure (the first is a warm-up when there are several).
    rows = [{ figure: `restart storm of ${N}${ON_MOSQUITTO ? ' on Mosquitto' : ''}, all back in the VPN`, value: ks.max / 1000, unit: 's', floor: fs.max / 1000, ratio: ks.max / fs.max, target: '≤ 3×', met: ks.max / fs.max <= 3 }];
  }
  await Promise.all(agents.map((a) => a.stop({ leave: false })));
  benchJson(rows);
} finally {
  if (up) await stop(up);
  if (floor) await stop(floor);
  await kagiMosquitto?.stop();
  await floorMosquitto?.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
