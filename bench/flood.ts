/**
 * bench/flood: one insider (a provisioned device, bench/flooder.ts in a
 * process of its own) floods `kagi up` (its own process, embedded broker)
 * with garbage publishes as fast as TCP lets it, while honest terminals
 * join one after another (connect, config request, join with a password,
 * keys). Issue 23's target: joins during the flood within 2x of their quiet
 * p50, none failing; `kagi up`'s memory back to its baseline within a
 * minute after the flood.
 *
 * The floor is measured in the same run, after a warm-up of a few joins:
 * the quiet p50 of --joins joins before the flood (joins), and kagi up's
 * resident memory after the first quiet joins, before any flood (memory). Each of --runs runs measures a
 * quiet p50 and a flood p50 and prints their ratio; the rows are the
 * median run. Then, once, the memory: kagi up's RSS every second after the
 * flood stops, until it is within 10% of the baseline or a minute passed.
 *
 *   npm run bench:flood -- --joins 20 --runs 3 [--memory-wait 60] [--cpu-prof DIR]
 *
 * With KAGI_BENCH_JSON set, the last line is `BENCH_JSON ` + the rows.
 */
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Bundle } from '../device/bundle.js';
import { TerminalAgent } from '../device/terminal.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { toHex } from '../protocol/bytes.js';
import { benchJson, positiveArg, seedFleet, type BenchRow } from './common.js';

const { values } = parseArgs({ options: { joins: { type: 'string', default: '20' }, runs: { type: 'string', default: '3' }, 'cpu-prof': { type: 'string' }, 'memory-wait': { type: 'string', default: '60' }, help: { type: 'boolean', default: false } } });
if (values.help) {
  console.log(`usage: npm run bench:flood -- [--joins 20] [--runs 3] [--memory-wait 60] [--cpu-prof DIR]
  --joins N          honest joins measured quiet and again during the flood, per run (default 20)
  --runs R           runs; the rows are the median run's (default 3)
  --memory-wait S    seconds to wait after the flood for kagi up's RSS to come back within
                     10% of its baseline (default 60, the target)
  --cpu-prof DIR     profile kagi up (node --cpu-prof) into DIR`);
  process.exit(0);
}
const JOINS = positiveArg('bench:flood', 'joins', values.joins);
const RUNS = positiveArg('bench:flood', 'runs', values.runs);
const WARMUP = 3;


/** A child that prints `pattern` with a capture when ready. */
function startChild(args: string[], pattern: RegExp, onLine?: (line: string) => void): Promise<{ child: ChildProcess; match: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let found = false;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (onLine) for (const l of d.split('\n')) if (l) onLine(l);
      if (found) return;
      if (out.length < 100_000) out += d;
      const m = pattern.exec(out);
      if (m) (found = true), resolve({ child, match: m[1]! });
    });
    child.once('exit', (code) => found || reject(new Error(`${args.join(' ')} exited ${code}: ${out.slice(-2000)}`)));
  });
}

function stop(c: ChildProcess | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!c || c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGTERM');
  });
}

/** Resident memory of a process (MiB), from /proc. */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}


/** One honest join from scratch; its time (ms), or null when it failed. */
async function join1(b: Bundle, url: string): Promise<number | null> {
  const a = new TerminalAgent({ ...b, broker: url }, nodePlatform({ brokerUrl: url }), { timeoutMs: 10_000, attempts: 1 });
  const t0 = performance.now();
  try {
    await a.start();
    await a.configure();
    await a.join('bench', 'bench-password');
    return performance.now() - t0;
  } catch (e) {
    if (process.env.FLOOD_DEBUG) console.error(`join of ${b.id} failed: ${(e as Error).message}`);
    return null;
  } finally {
    await a.stop({ leave: false }).catch(() => {});
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};

const dir = mkdtempSync(join(tmpdir(), 'kagi-flood-'));
let up: ChildProcess | undefined;
let flooder: ChildProcess | undefined;
try {
  const bundles = await seedFleet(dir, 1 + WARMUP + 2 * JOINS * RUNS, (i) => (i === 0 ? 'insider' : `h${i}`));
  const prof = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof']] : [];
  const started = await startChild([...prof, 'dist/cli/kagi.js', 'up', '--data', dir, '--port', '0', '--log-format', 'json'], /kagi up: broker (\S+),/);
  up = started.child;
  const url = started.match;
  const [insider, ...honest] = bundles;
  let next = 0;
  for (let i = 0; i < WARMUP; i++) await join1(honest[next++]!, url);
  let baseline = NaN;
  let peak = 0;
  let sent = 0;
  const runs: { quiet: number; flood: number; failed: number }[] = [];
  for (let r = 0; r < RUNS; r++) {
    const quiet: number[] = [];
    for (let i = 0; i < JOINS; i++) {
      const ms = await join1(honest[next++]!, url);
      if (ms !== null) quiet.push(ms);
    }
    // The memory floor: after the warm-up and the first quiet joins, before any flood.
    if (r === 0) peak = baseline = rssMiB(up.pid!);
    let lastSent = 0;
    const f = await startChild(['dist/bench/flooder.js', url, insider!.id, toHex(insider!.secretKey), toHex(insider!.services.broker)], /(connects [1-9])/, (l) => {
      const m = /sent (\d+)/.exec(l);
      if (m) lastSent = Number(m[1]);
    });
    flooder = f.child;
    await new Promise((r) => setTimeout(r, 2000)); // the flood under way (its burst allowance spent)
    const during: number[] = [];
    let failed = 0;
    for (let i = 0; i < JOINS; i++) {
      const ms = await join1(honest[next++]!, url);
      if (ms === null) failed++;
      else during.push(ms);
      peak = Math.max(peak, rssMiB(up.pid!));
    }
    await stop(flooder);
    sent += lastSent;
    runs.push({ quiet: median(quiet), flood: median(during), failed });
    console.log(`run ${r + 1}: quiet p50 ${median(quiet).toFixed(0)} ms, during the flood p50 ${median(during).toFixed(0)} ms (x${(median(during) / median(quiet)).toFixed(2)}), ${failed} of ${JOINS} failed; the flooder sent ${lastSent}`);
  }
  // Memory: back within 10% of the baseline, within a minute?
  const wait = Number(values['memory-wait']);
  let after = rssMiB(up.pid!);
  let backIn = NaN;
  const t0 = Date.now();
  while (Date.now() - t0 < wait * 1000) {
    after = rssMiB(up.pid!);
    if (after <= baseline * 1.1) {
      backIn = (Date.now() - t0) / 1000;
      break;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  const mid = [...runs].sort((a, b) => a.flood / a.quiet - b.flood / b.quiet)[Math.floor((runs.length - 1) / 2)]!;
  const failed = runs.reduce((a, r) => a + r.failed, 0);
  const rows: BenchRow[] = [
    { figure: 'honest join p50 during the flood', value: Math.round(mid.flood), unit: 'ms', floor: Math.round(mid.quiet), ratio: mid.flood / mid.quiet, target: '≤ 2× quiet', met: mid.flood / mid.quiet <= 2 },
    { figure: 'honest joins failed during the flood', value: failed, unit: 'joins', floor: 0, ratio: failed / (JOINS * RUNS), target: 'none fail', met: failed === 0 },
    { figure: `kagi up memory ${Number.isNaN(backIn) ? wait : backIn.toFixed(0)} s after the flood`, value: Math.round(after), unit: 'MiB', floor: Math.round(baseline), ratio: after / baseline, target: '≤ 1.1× the baseline', met: after <= baseline * 1.1 },
  ];
  console.log(`\nflood: ${RUNS} runs of ${JOINS} joins quiet and ${JOINS} during the flood (median run by ratio); the flooder sent ${sent} publishes in all`);
  for (const r of rows) console.log(`  ${r.figure}: ${r.value} ${r.unit} (floor ${r.floor} ${r.unit}, ratio ${r.ratio.toFixed(2)}, target ${r.target}) ${r.met ? 'met' : 'NOT met'}`);
  console.log(`  kagi up peak memory during the flood: ${Math.round(peak)} MiB (baseline ${Math.round(baseline)} MiB)`);
  benchJson(rows);
} finally {
  await stop(flooder);
  await stop(up);
  rmSync(dir, { recursive: true, force: true });
}
