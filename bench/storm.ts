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
 * The devices (and the floor's clients, the same way) run in
 * --device-processes processes of their own (bench/storm-devices.ts), N/K
 * each (default 1). On a site each device has its own CPU; 10,000 agents in
 * one process are one thread, which kagi up waits on (each process's CPU
 * during the storm is printed, to see who waits on whom). More processes
 * still share the host's 2 cores with kagi up: on this host 2 made the
 * storm slower, not faster.
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
import { fork, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Bundle } from '../device/bundle.js';
import { benchJson, childCpuMs, hostCpuMs, percentile, positiveArg, progressLine, seedFleet, startChild, stopChild, type BenchRow } from './common.js';
import type { DevicesAnswer, DevicesCommand } from './storm-devices.js';
import { Mosquitto } from './mosquitto.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '3' },
    'setup-concurrency': { type: 'string', default: '100' },
    'device-processes': { type: 'string', default: '1' },
    'cpu-prof': { type: 'string' },
    broker: { type: 'string', default: 'embedded' },
    'mosquitto-conf': { type: 'string', multiple: true, default: [] },
    'config-request': { type: 'boolean', default: false },
    'agent-timeout': { type: 'string', default: '60000' },
    'start-batch': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run bench:storm -- [--n 10000] [--runs 3] [--setup-concurrency 100] [--device-processes 1] [--cpu-prof DIR] [--broker embedded|mosquitto] [--config-request] [--agent-timeout MS] [--start-batch B]
  --n N                  devices (default 10000)
  --runs R               storms, the first a warm-up (default 3)
  --setup-concurrency C  first joins at a time during the set-up (default 100)
  --device-processes K   processes the devices (and the floor's clients) are spread over,
                         N/K each (default 1: all in one thread)
  --cpu-prof DIR         write a V8 CPU profile of kagi up to DIR
  --broker B             embedded (default): kagi up's own broker holds the connections;
                         mosquitto: a Mosquitto the bench starts holds them (kagi up --broker),
                         and the floor runs on a second one
  --mosquitto-conf LINE  a line added to both Mosquittos' configuration (repeatable), e.g.
                         'max_queued_messages 100000'
  --config-request       every agent asks for its config before its re-join, as agents did
                         before decision 122 (to measure what that request cost)
  --agent-timeout MS     how long an agent waits for an answer before it asks again during the
                         storm (default 60000; kagi agent's own is 10000): a shorter wait sends
                         more requests, and kagi up's join count shows how many it answered
  --start-batch B        each devices' process starts its agents (and the floor's clients) B per
                         turn of its event loop instead of all in one (default: all at once, as a
                         site's devices come back): how much the one thread that simulates them
                         holds kagi up back (10,000 starts take it 3 s before any CONNECT leaves)
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
const K = positiveArg('bench:storm', 'device-processes', values['device-processes']);
const AGENT_TIMEOUT_MS = positiveArg('bench:storm', 'agent-timeout', values['agent-timeout']);
const START_BATCH = values['start-batch'] === undefined ? undefined : positiveArg('bench:storm', 'start-batch', values['start-batch']);

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

/** kagi up's kagi_joins_total (NaN when the metrics cannot be read). */
async function joinsMade(url: string): Promise<number> {
  try {
    const m = /^kagi_joins_total (\d+)/m.exec(await (await fetch(url)).text());
    return m ? Number(m[1]) : 0;
  } catch {
    return NaN;
  }
}

/** The devices' processes (bench/storm-devices.ts), each with its share of the fleet. */
class Devices {
  private constructor(private readonly procs: ChildProcess[], private readonly shares: Bundle[][]) {}

  static async start(bundles: Bundle[], k: number): Promise<Devices> {
    const per = Math.ceil(bundles.length / k);
    const shares = Array.from({ length: k }, (_, i) => bundles.slice(i * per, (i + 1) * per)).filter((x) => x.length > 0);
    const procs = shares.map(() => fork(new URL('./storm-devices.js', import.meta.url), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    return new Devices(procs, shares);
  }

  /** Send `cmd` (per process: made from its share and its first device's index) to all; their answers, once all came. */
  async all(what: string, cmd: (share: Bundle[], from: number) => DevicesCommand): Promise<DevicesAnswer[]> {
    let done = 0;
    let from = 0;
    const answers = await Promise.all(this.procs.map((p, i) => {
      const m = cmd(this.shares[i]!, from);
      from += this.shares[i]!.length;
      return new Promise<DevicesAnswer>((resolve, reject) => {
        const on = (a: DevicesAnswer | { progress: number }) => {
          if ('progress' in a) return progress(what, (done += a.progress));
          p.off('message', on);
          p.off('exit', gone);
          if (a.error) reject(new Error(`devices ${i}: ${m.cmd}: ${a.error}`));
          else resolve(a);
        };
        const gone = (code: number | null) => reject(new Error(`devices ${i} exited ${code} during ${m.cmd}`));
        p.on('message', on);
        p.once('exit', gone);
        p.send(m);
      });
    }));
    progress(what, N);
    return answers;
  }

  async stop(): Promise<void> {
    const exited = this.procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r))));
    await this.all('stopping', () => ({ cmd: 'stop' })).catch(() => {});
    // Each exits by itself once it answered (writing its profile, with --cpu-prof); a stuck one is killed.
    const timer = setTimeout(() => this.procs.forEach((p) => p.exitCode === null && p.kill()), 30_000);
    await Promise.all(exited);
    clearTimeout(timer);
  }
}

/**
 * `work`, or a rejection as soon as one of `needed` exits before it is
 * done: a storm whose kagi up or floor server died would otherwise wait
 * on devices that can never be back (its own stderr says why it died).
 */
function whileAlive<T>(needed: Record<string, ChildProcess | undefined>, work: Promise<T>): Promise<T> {
  const watches: (() => void)[] = [];
  const died = new Promise<never>((_, reject) => {
    for (const [name, c] of Object.entries(needed)) {
      if (!c) continue;
      if (c.exitCode !== null || c.signalCode !== null) return reject(new Error(`${name} is not running (exit ${c.exitCode ?? c.signalCode})`));
      const gone = (code: number | null, signal: string | null) => reject(new Error(`${name} exited (${code ?? signal}) during the storm`));
      c.once('exit', gone);
      watches.push(() => c.off('exit', gone));
    }
  });
  return Promise.race([work, died]).finally(() => watches.forEach((off) => off()));
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
let devices: Devices | undefined;
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
  // STORM_LOG=FILE keeps kagi up's log (what a tail waited for is in it).
  const log = process.env.STORM_LOG ? createWriteStream(process.env.STORM_LOG) : undefined;
  const started = await startChild([...prof, 'dist/cli/kagi.js', 'up', '--data', data, ...where, '--metrics-port', '0', '--timeout', '60s', '--log-format', 'json', ...(process.env.STORM_LOG ? ['--verbose'] : [])], /kagi up: broker (\S+),.*metrics (http:\/\/[^\s,"]+)/, log);
  up = started.child;
  const url = started.url;
  const metricsUrl = started.metrics!;
  const fl = await startChild(['dist/bench/floor-server.js', ...(floorMosquitto ? ['--broker', floorMosquitto.url] : [])], /floor: (\S+)/);
  floor = fl.child;

  // Set-up: every device joins once with the password, and keeps the ticket.
  devices = await Devices.start(bundles, K);
  await devices.all('first joins (set-up)', (share) => ({ cmd: 'setup', bundles: share, url, files, concurrency: Math.max(1, Math.ceil(Number(values['setup-concurrency']) / K)) }));

  let rows: BenchRow[] = [];
  console.log(`storm: ${N} devices, each its own MQTT connection, kagi up in its own process (SQLite)${ON_MOSQUITTO ? ' with the connections on a Mosquitto of its own (the floor on another)' : ''}, the agents and the floor's clients in ${K} process${K > 1 ? 'es' : ''} of their own`);
  // Counted from here: the set-up's refusals and drops (first joins, more at
  // once than the password queue takes) are not a storm's.
  let seen = await troubleCounts(metricsUrl);
  const droppedBefore = { kagi: (await kagiMosquitto?.dropped()) ?? 0, floor: (await floorMosquitto?.dropped()) ?? 0 };
  for (let run = 1; run <= RUNS; run++) {
    await devices.all('power loss', () => ({ cmd: 'down' }));
    // The floor first, while the agents are down: both sides' N sockets at once would pass the fd limit.
    const fa = await whileAlive({ 'the floor server': floor }, devices.all('floor: back', (_, from) => ({ cmd: 'floor', url: fl.url, from, ...(START_BATCH ? { startBatch: START_BATCH } : {}) })));
    const f = fa.flatMap((a) => a.times!);
    const floorRetries = fa.reduce((n, a) => n + (a.retries ?? 0), 0);
    const from = process.hrtime.bigint() / 1000n;
    const cpu0 = { up: childCpuMs(up.pid), broker: childCpuMs(kagiMosquitto?.child.pid), host: hostCpuMs() };
    const joins0 = await joinsMade(metricsUrl);
    const ka = await whileAlive({ 'kagi up': up }, devices.all('back in the VPN', () => ({ cmd: 'storm', configRequest: values['config-request'], timeoutMs: AGENT_TIMEOUT_MS, ...(START_BATCH ? { startBatch: START_BATCH } : {}) })));
    const joins = (await joinsMade(metricsUrl)) - joins0;
    const host = hostCpuMs();
    /** now − before, NaN where either could not be read. */
    const delta = (now: number | undefined, before: number | undefined) => (now ?? NaN) - (before ?? NaN);
    const cpu = {
      agents: ka.reduce((n, a) => n + (a.cpuMs ?? 0), 0),
      up: delta(childCpuMs(up.pid), cpu0.up),
      broker: delta(childCpuMs(kagiMosquitto?.child.pid), cpu0.broker),
      hostBusy: delta(host?.busy, cpu0.host?.busy),
      hostIdle: delta(host?.idle, cpu0.host?.idle),
    };
    // The profile covers set-up too: its samples carry the same monotonic clock (µs).
    if (prof.length) console.log(`  (profile window of run ${run}: ${from}..${process.hrtime.bigint() / 1000n} µs)`);
    const ks = summary(ka.flatMap((a) => a.times!));
    const fs = summary(f);
    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    console.log(`run ${run}${run === 1 ? ' (warm-up)' : ''}:`);
    console.log(`  kagi (connect, ${values['config-request'] ? 'config request, ' : ''}join on the ticket, keys): p50 ${s(ks.p50)}  p99 ${s(ks.p99)}  all back ${s(ks.max)}`);
    console.log(`  floor (connect, one round trip, bare MQTT):       p50 ${s(fs.p50)}  p99 ${s(fs.p99)}  all back ${s(fs.max)}${floorRetries ? `  (${floorRetries} clients connected again)` : ''}`);
    console.log(`  ratio kagi/floor (all back): ${(ks.max / fs.max).toFixed(2)}x`);
    // Who was busy: a process at 100% of the wall is what the others waited on.
    const busy = (ms: number) => `${(ms / 1000).toFixed(1)} s (${Math.round((100 * ms) / ks.max)}%)`;
    console.log(`  CPU during kagi's storm: the agents ${busy(cpu.agents)} (${K} process${K > 1 ? 'es' : ''}), kagi up ${busy(cpu.up)}${kagiMosquitto ? `, its Mosquitto ${busy(cpu.broker)}` : ''}; ${((cpu.agents + cpu.up + (kagiMosquitto ? cpu.broker : 0)) / N).toFixed(2)} ms per device; the host ${Math.round((100 * cpu.hostBusy) / (cpu.hostBusy + cpu.hostIdle))}% busy (all cores, the kernel's share too)`);
    // What went wrong on the way, if anything (a device lost in a stage
    // waits out its timeout: a tail in p99 has its cause here).
    const now = await troubleCounts(metricsUrl);
    const news = [...now].filter(([k, v]) => v > (seen.get(k) ?? 0)).map(([k, v]) => `${k} ${v - (seen.get(k) ?? 0)}`);
    console.log(`  kagi up during the run: ${news.length ? news.join(', ') : 'nothing dropped, refused or evicted'}; ${joins} joins answered for ${N} devices (agents asked again after ${AGENT_TIMEOUT_MS / 1000} s without an answer)`);
    seen = now;
    if (kagiMosquitto && floorMosquitto) {
      const dropped = { kagi: await kagiMosquitto.dropped(), floor: await floorMosquitto.dropped() };
      console.log(`  messages the Mosquittos dropped (queues full): kagi's ${dropped.kagi - droppedBefore.kagi}, the floor's ${dropped.floor - droppedBefore.floor}`);
      Object.assign(droppedBefore, dropped);
    }
    // The last run's figure (the first is a warm-up when there are several).
    rows = [{ figure: `restart storm of ${N}${ON_MOSQUITTO ? ' on Mosquitto' : ''}, all back in the VPN`, value: ks.max / 1000, unit: 's', floor: fs.max / 1000, ratio: ks.max / fs.max, target: '≤ 3×', met: ks.max / fs.max <= 3 }];
  }
  benchJson(rows);
} finally {
  await devices?.stop();
  if (up) await stopChild(up);
  if (floor) await stopChild(floor);
  await kagiMosquitto?.stop();
  await floorMosquitto?.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
