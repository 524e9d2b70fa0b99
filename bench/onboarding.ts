/**
 * bench/onboarding: N terminals through their first join (the device and
 * the user checked in one request, decision 138) and keys on the embedded
 * broker, then again as new agents on their resumption tickets, beside a
 * bare-MQTT floor measured in the same run: plain aedes, no crypto, no
 * store, the same number of request/response round trips per terminal (a
 * join is 4: the terminal's join, config → auth, config → keys,
 * keys → terminal and back).
 *
 * A first join checks the user's password (scrypt, ~30 ms of a core), so
 * the joins are also set beside a second floor from the same run: N scrypt
 * checks of the same password on a hash pool like the auth server's (same
 * concurrency), submitted at the same concurrency. joins/s ÷ checks/s is
 * what the protocol leaves of the hash rate (target: at least 80%).
 *
 * Then every terminal stops (leaving its VPNs) and comes back as a new
 * agent holding only its resumption ticket: connect, join on the ticket
 * (no config request, decision 122; no scrypt), keys — set beside the
 * bare-MQTT floor of those 4 round trips. Target: at most 2x (the
 * onboarding goal 1.5x).
 *
 * Then the latency of a refusal for an unknown user beside one for a wrong
 * password (one agent, mean of --probes each after a warm-up, alternating;
 * throttling off): they should be the same, and this is where any
 * difference is reported (the tests do not time it).
 *
 * Each side first runs --warmup terminals (or floor clients) through its
 * phases untimed, so neither is timed while it compiles. Then --runs
 * rounds, each of fresh terminals, each measuring every figure beside its
 * floor measured just before it (the scrypt floor, then the first joins;
 * the floor of 4 round trips, then the re-joins): a shared host's
 * load moves over seconds, so each ratio is taken between neighbours and
 * the figures judged are the rounds' medians. kagi's control plane is up
 * (and idle: no agent connected) while the floors of a round run.
 *
 *   npm run bench:onboarding -- --n 1000 --concurrency 50 --probes 200 [--runs 3] [--warmup 100] [--pool N]
 */
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { addDevice } from '../servers/admin.js';
import { benchControlPlane, benchJson, benchMac, cpuMsSince, floorBroker, mainThreadCpuMs, mark, median, noDelay, pool } from './common.js';
import { parseBundle, type Bundle } from '../device/bundle.js';
import { TerminalAgent } from '../device/terminal.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { MemorySecretStore } from '../device/tickets.js';
import { HashPool } from '../servers/auth/hash-pool.js';
import { hashPassword, verifyPassword } from '../servers/auth/password.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '1000' }, concurrency: { type: 'string', default: '50' }, probes: { type: 'string', default: '200' }, runs: { type: 'string', default: '3' }, warmup: { type: 'string', default: '100' }, pool: { type: 'string' }, help: { type: 'boolean', default: false } } });
if (values.help) {
  console.log(`usage: npm run bench:onboarding -- [--n 1000] [--concurrency 50] [--probes 200] [--warmup 100] [--pool N]
  --n N            terminals timed through a first join, then a re-join on their tickets (default 1000)
  --concurrency C  terminals (floor clients, hash checks) at once (default 50)
  --probes P       refusals timed for an unknown user and for a wrong password, each (default 200; 0: not measured)
  --runs R         rounds of fresh terminals, each figure beside its floor measured just before it; medians judged (default 3)
  --warmup W       terminals and floor clients run through every phase first, untimed (default 100)
  --pool N         the auth server's hash pool (default: the cores)`);
  process.exit(0);
}
const N = Number(values.n);
/** Terminals (floor clients) through every phase first, untimed: the code is compiled before the timing, on both sides. */
const W = Number(values.warmup);
const C = Number(values.concurrency);
const PROBES = Number(values.probes);
const RUNS = Number(values.runs);
/** The auth server's hash pool (default: its own, the cores). */
const POOL = values.pool === undefined ? undefined : Number(values.pool);
if (![N, C, RUNS, POOL ?? 1].every((x) => Number.isInteger(x) && x >= 1) || ![W, PROBES].every((x) => Number.isInteger(x) && x >= 0)) {
  console.error('bench:onboarding: --n, --concurrency, --runs and --pool take whole numbers of at least 1, --warmup and --probes of at least 0 (--help)');
  process.exit(2);
}
/** Round trips of a join, first or on a ticket, as counted above. */
const ROUND_TRIPS = 4;


/** One timed phase of kagi: wall time, the process's CPU, its main thread's CPU (ms). */
interface Phase { ms: number; cpuMs: number; mainMs: number | undefined }
/** A floor's time and the process's CPU (ms). */
interface Floor { ms: number; cpuMs: number }
/** One round: each figure beside the floor measured just before it. */
interface Round { scrypt: Floor & { concurrency: number }; first: Phase; floor: Floor; rejoin: Phase }

/**
 * --runs rounds on one control plane: each of N fresh terminals, first
 * joins (the password) after the scrypt floor, then re-joins of the same
 * terminals as new agents holding only their tickets after the floor of
 * their round trips. Both sides warm up first.
 */
async function rounds(): Promise<Round[]> {
  const { cp, crypto, close } = await benchControlPlane(POOL ? { password: { concurrency: POOL } } : {});
  const bundles: Bundle[] = [];
  for (let i = 0; i < W + RUNS * N; i++) {
    bundles.push(parseBundle(await addDevice(cp.store, cp.keys, crypto, { id: `t${i}`, mac: benchMac(i), kind: 'terminal', broker: cp.brokerUrl })));
  }
  // Each terminal's ticket store outlives its agent, as FILE.tickets does.
  const wallets = bundles.map(() => new MemorySecretStore());
  const phase = async (password: string | undefined, from: number, to: number): Promise<Phase> => {
    const agents: TerminalAgent[] = [];
    mark(`${password ? 'first' : 'rejoin'}-start`);
    const cpu0 = process.cpuUsage();
    const main0 = mainThreadCpuMs();
    const t0 = performance.now();
    await pool(from, to, C, async (i) => {
      const a = new TerminalAgent(bundles[i]!, { ...nodePlatform({ brokerUrl: cp.brokerUrl }), secrets: wallets[i]! }, { timeoutMs: 60_000 });
      agents.push(a);
      await a.start();
      // No config request: the join checks the device too (decisions 122, 138).
      await a.join('bench', password);
    });
    const ms = performance.now() - t0;
    const cpuMs = cpuMsSince(cpu0);
    const main1 = mainThreadCpuMs();
    mark(`${password ? 'first' : 'rejoin'}-end`);
    for (const a of agents) await a.stop();
    return { ms, cpuMs, mainMs: main0 === undefined || main1 === undefined ? undefined : main1 - main0 };
  };
  if (W > 0) {
    await floorRun(W, ROUND_TRIPS);
    await phase('bench-password', 0, W);
    await phase(undefined, 0, W);
  }
  const out: Round[] = [];
  for (let r = 0; r < RUNS; r++) {
    const from = W + r * N;
    const scrypt = await scryptRun();
    const first = await phase('bench-password', from, from + N);
    const floor = await floorRun(N, ROUND_TRIPS);
    const rejoin = await phase(undefined, from, from + N);
    out.push({ scrypt, first, floor, rejoin });
    console.error(`  round ${r + 1}/${RUNS}: first joins ${((100 * scrypt.ms) / first.ms).toFixed(0)}% of the hash rate, re-joins ${(rejoin.ms / floor.ms).toFixed(2)}x their floor`);
  }
  await close();
  return out;
}

async function floorRun(n: number, roundTrips: number): Promise<{ ms: number; cpuMs: number }> {
  const broker = await floorBroker();
  const url = broker.url;
  const responder = noDelay(await mqtt.connectAsync(url, { clientId: 'floor-svc' }));
  await responder.subscribeAsync('floor/req/+', { qos: 1 });
  responder.on('message', (topic, payload) => void responder.publish(`floor/res/${topic.split('/')[2]}`, payload, { qos: 1 }));
  const clients: mqtt.MqttClient[] = [];
  mark('floor-start');
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await pool(0, n, C, async (i) => {
    const c = noDelay(await mqtt.connectAsync(url, { clientId: `floor-${i}` }));
    clients.push(c);
    await c.subscribeAsync(`floor/res/${i}`, { qos: 1 });
    for (let k = 0; k < roundTrips; k++) {
      const got = new Promise<void>((r) => c.once('message', () => r()));
      await c.publishAsync(`floor/req/${i}`, Buffer.alloc(200), { qos: 1 });
      await got;
    }
  });
  const ms = performance.now() - t0;
  const cpuMs = cpuMsSince(cpu0);
  mark('floor-end');
  for (const c of clients) await c.endAsync();
  await responder.endAsync();
  await broker.close();
  return { ms, cpuMs };
}

/** N password checks on a hash pool like the auth server's, C at a time: the hash's own rate. */
async function scryptRun(): Promise<{ ms: number; cpuMs: number; concurrency: number }> {
  const hash = await hashPassword('bench-password');
  const hashes = new HashPool({ maxWaiting: C, ...(POOL ? { concurrency: POOL } : {}) });
  mark('scrypt-start');
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await pool(0, N, C, async () => {
    const slot = hashes.reserve();
    if (!slot) throw new Error('the floor pool refused a check: more than concurrency + maxWaiting at once');
    if (!(await slot.run(() => verifyPassword('bench-password', hash)))) throw new Error('the floor check failed');
  });
  const ms = performance.now() - t0;
  const cpuMs = cpuMsSince(cpu0);
  mark('scrypt-end');
  return { ms, cpuMs, concurrency: hashes.concurrency };
}

/** Mean refusal latency (ms) of an unknown user and of a wrong password, alternating, after a warm-up. */
async function probeRun(): Promise<{ unknown: number; wrong: number }> {
  // Throttling off: one device refused hundreds of times in a row.
  const { cp, crypto, close } = await benchControlPlane({ password: { throttle: { free: Infinity } } });
  const b = parseBundle(await addDevice(cp.store, cp.keys, crypto, { id: 'prober', mac: '02:00:00:ff:ff:ff', kind: 'terminal', broker: cp.brokerUrl }));
  const a = new TerminalAgent(b, nodePlatform({ brokerUrl: cp.brokerUrl }), { timeoutMs: 60_000 });
  await a.start();
  await a.configure();
  const refusal = async (user: string) => {
    const t0 = performance.now();
    await a.join(user, 'a-guess').then(() => Promise.reject(new Error(`${user} joined with a guess`)), (e: Error) => {
      if (e.name !== 'RefusedError') throw e;
    });
    return performance.now() - t0;
  };
  for (let i = 0; i < 20; i++) await refusal(i % 2 ? 'bench' : 'nobody'); // warm-up
  const sums = { unknown: 0, wrong: 0 };
  for (let i = 0; i < PROBES; i++) {
    sums.unknown += await refusal(`nobody-${i}`);
    sums.wrong += await refusal('bench');
  }
  await a.stop();
  await close();
  return { unknown: sums.unknown / PROBES, wrong: sums.wrong / PROBES };
}

const all = await rounds();
// --probes 0: the refusals are not measured (nothing to print but that).
const probes = PROBES > 0 ? await probeRun() : undefined;
const rate = (ms: number) => (N / (ms / 1000)).toFixed(1);
const perJoin = (ms: number | undefined) => (ms === undefined ? 'n/a' : `${(ms / N).toFixed(2)} ms`);
console.log(`onboarding of ${N} terminals, concurrency ${C}, ${RUNS} round${RUNS === 1 ? '' : 's'} of fresh terminals (each figure beside its floor measured just before it)`);
for (const [i, r] of all.entries()) {
  console.log(`round ${i + 1}:`);
  console.log(`  bare MQTT floor (${ROUND_TRIPS} round trips each): ${r.floor.ms.toFixed(0)} ms  ${rate(r.floor.ms)} /s`);
  console.log(`  kagi first joins + keys:          ${r.first.ms.toFixed(0)} ms  ${rate(r.first.ms)} joins/s (connect + join: one password check each, no config request)`);
  console.log(`  kagi re-joins on tickets:         ${r.rejoin.ms.toFixed(0)} ms  ${rate(r.rejoin.ms)} joins/s (new agents, connect + join, no config request, no password)`);
  console.log(`  ratio re-joins/floor of ${ROUND_TRIPS} (time): ${(r.rejoin.ms / r.floor.ms).toFixed(2)}x`);
  console.log(`  CPU per re-join: ${(r.rejoin.cpuMs / N).toFixed(2)} ms vs ${(r.floor.cpuMs / N).toFixed(2)} ms per floor set: ${(r.rejoin.cpuMs / r.floor.cpuMs).toFixed(2)}x (the process's CPU time, steadier than the wall on a shared machine)`);
  console.log(`  scrypt floor (${N} checks, pool of ${r.scrypt.concurrency}): ${r.scrypt.ms.toFixed(0)} ms  ${rate(r.scrypt.ms)} checks/s; joins/s vs checks/s: ${((100 * r.scrypt.ms) / r.first.ms).toFixed(0)}% of the hash rate`);
  // Where the cores are all busy, the share of the hash rate is the share of
  // the CPU a join leaves to its hash: what else a first join costs is what
  // stands between the two (every process's CPU here: agents and services).
  const hashCpu = r.scrypt.cpuMs / N;
  console.log(`  CPU per first join: ${(r.first.cpuMs / N).toFixed(2)} ms, of which the hash ${hashCpu.toFixed(2)} ms (the floor's) and the rest ${(r.first.cpuMs / N - hashCpu).toFixed(2)} ms; the main thread (agents and services) ${perJoin(r.first.mainMs)}, ${perJoin(r.rejoin.mainMs)} per re-join`);
}
const share = median(all.map((r) => r.scrypt.ms / r.first.ms));
const rejoinRatio = median(all.map((r) => r.rejoin.ms / r.floor.ms));
console.log(`median of ${RUNS} round${RUNS === 1 ? '' : 's'}:`);
console.log(`  ratio re-joins/floor of ${ROUND_TRIPS} (time): ${rejoinRatio.toFixed(2)}x (target: at most 2x); CPU: ${median(all.map((r) => r.rejoin.cpuMs / r.floor.cpuMs)).toFixed(2)}x`);
console.log(`  first joins vs checks/s: ${(100 * share).toFixed(0)}% of the hash rate (target: at least 80%)`);
if (!probes) console.log('refusal latency: not measured (--probes 0)');
else {
  console.log(`refusal latency, mean of ${PROBES} each after 20 warm-up, one agent:`);
  console.log(`  unknown user:   ${probes.unknown.toFixed(2)} ms`);
  console.log(`  wrong password: ${probes.wrong.toFixed(2)} ms`);
  console.log(`  difference: ${(probes.unknown - probes.wrong).toFixed(2)} ms (${((100 * (probes.unknown - probes.wrong)) / probes.wrong).toFixed(1)}%)`);
}
const perS = (ms: number) => N / (ms / 1000);
benchJson([
  { figure: `first joins (password), ${N} terminals, median of ${RUNS}`, value: median(all.map((r) => perS(r.first.ms))), unit: 'joins/s', floor: median(all.map((r) => perS(r.scrypt.ms))), ratio: share, target: '≥ 0.8 of the scrypt rate', met: share >= 0.8 },
  { figure: `re-joins on tickets, ${N} terminals, median of ${RUNS}`, value: median(all.map((r) => perS(r.rejoin.ms))), unit: 'joins/s', floor: median(all.map((r) => perS(r.floor.ms))), ratio: rejoinRatio, target: '≤ 2× the bare-MQTT time', met: rejoinRatio <= 2 },
]);
process.exit(0);
