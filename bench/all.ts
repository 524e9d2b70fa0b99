/**
 * npm run bench: every bench, each as a child process at a size that keeps
 * the whole under a few minutes, with KAGI_BENCH_JSON=1 so that each ends
 * with one line `BENCH_JSON [rows]` (bench/common.ts benchJson). Prints one
 * table of every figure beside its floor, the ratio and whether the target
 * is met; a bench that fails (exits non-zero, times out, prints no rows or
 * rows it cannot read) is named and the others still run. Exits 1 if one
 * failed, else 0.
 *
 * bench:boards (two minutes, mostly building bundles) runs only when named.
 *
 *   npm run bench [-- --only idle,storm,boards] [-- --timeout 600]
 */
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { BenchRow } from './common.js';
import { eachLine } from './child-lines.js';

/** Each bench and the size it runs at here (the full sizes are in bench/README.md). */
const BENCHES: { name: string; args: string[]; byDefault?: false }[] = [
  { name: 'crypto', args: [] },
  { name: 'onboarding', args: ['--n', '200', '--concurrency', '50', '--probes', '50'] },
  { name: 'relay', args: ['--n', '200'] },
  { name: 'rekey', args: ['--n', '2000', '--connections', '20'] },
  { name: 'storm', args: ['--n', '500', '--runs', '2'] },
  { name: 'scale', args: ['--n', '500', '--concurrency', '100'] },
  { name: 'idle', args: ['--n', '1000', '--idle', '10', '--runs', '2'] },
  { name: 'idle-cpu', args: ['--n', '10000', '--seconds', '10', '--runs', '1'] },
  { name: 'flood', args: ['--joins', '20', '--runs', '1'] },
  { name: 'linearity', args: ['--n', '2000', '--step', '500'] },
  // Two minutes here, most of it building the bundles: only when asked (--only boards).
  { name: 'boards', args: ['--runs', '1'], byDefault: false },
];

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    timeout: { type: 'string', default: '600' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run bench -- [--only NAME,…] [--timeout SECONDS]
Runs ${BENCHES.filter((b) => b.byDefault !== false).map((b) => b.name).join(', ')} (each in its own process, small sizes; boards
only with --only) and prints one table:
figure, value, floor, ratio, target, met. A bench that fails is named; the others still run.
  --only NAME,…      run only these benches
  --timeout SECONDS  stop a bench that runs longer (default 600)`);
  process.exit(0);
}
const timeoutS = Number(values.timeout);
if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
  console.error(`npm run bench: --timeout must be a positive number of seconds, not ${JSON.stringify(values.timeout)}`);
  process.exit(2);
}
const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
const unknown = only?.filter((n) => !BENCHES.some((b) => b.name === n)) ?? [];
if (unknown.length) {
  console.error(`npm run bench: no bench named ${unknown.join(', ')} (choose from ${BENCHES.map((b) => b.name).join(', ')})`);
  process.exit(2);
}

type Outcome = { name: string; rows: BenchRow[]; seconds: number; failure?: string; note?: string };

function isRow(r: unknown): r is BenchRow {
  const o = r as Record<string, unknown>;
  return typeof o === 'object' && o !== null && typeof o.figure === 'string' && typeof o.value === 'number' && typeof o.unit === 'string'
    && typeof o.floor === 'number' && typeof o.ratio === 'number' && typeof o.target === 'string' && typeof o.met === 'boolean';
}

/** Runs one bench; its output goes to our stderr as it comes (progress), its BENCH_JSON line is kept. */
function run(name: string, args: string[]): Promise<Outcome> {
  const t0 = performance.now();
  const script = `dist/bench/${name}.js`;
  if (!existsSync(script)) return Promise.resolve({ name, rows: [], seconds: 0, failure: `${script} is missing (npm run build)` });
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KAGI_BENCH_JSON: '1' } });
    let json: string | undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 10_000).unref();
    }, timeoutS * 1000);
    const unfinished = eachLine(child.stdout!, (line) => {
      if (line.startsWith('BENCH_JSON ')) json = line.slice('BENCH_JSON '.length);
      else process.stderr.write(`[${name}] ${line}\n`);
    });
    child.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
    const finish = (failure?: string) => {
      clearTimeout(timer);
      const seconds = (performance.now() - t0) / 1000;
      const partial = unfinished();
      if (partial.startsWith('BENCH_JSON ')) json = partial.slice('BENCH_JSON '.length);
      let rows: BenchRow[] = [];
      let note: string | undefined;
      if (json !== undefined) {
        try {
          const parsed: unknown = JSON.parse(json);
          if (!Array.isArray(parsed) || !parsed.every(isRow)) failure ??= 'its BENCH_JSON line is not a list of {figure, value, unit, floor, ratio, target, met}';
          else rows = parsed;
        } catch (e) {
          failure ??= `its BENCH_JSON line is not JSON (${(e as Error).message})`;
        }
      } else if (!failure) note = 'ran, printed no BENCH_JSON line';
      resolve({ name, rows, seconds, ...(failure ? { failure } : {}), ...(note ? { note } : {}) });
    };
    child.once('error', (e) => finish(`could not start: ${e.message}`));
    child.once('exit', (code, signal) => finish(timedOut ? `timed out after ${timeoutS} s` : code === 0 ? undefined : `exited ${code ?? signal}`));
  });
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a >= 1000 ? Math.round(x).toLocaleString('en-US') : a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2);
}

const outcomes: Outcome[] = [];
for (const b of BENCHES) {
  if (only ? !only.includes(b.name) : b.byDefault === false) continue;
  process.stderr.write(`\n== bench:${b.name} ${b.args.join(' ')}\n`);
  outcomes.push(await run(b.name, b.args));
}

const header = ['bench', 'figure', 'value', 'floor', 'ratio', 'target', 'met'];
const table: string[][] = [];
for (const o of outcomes) {
  for (const r of o.rows) table.push([o.name, r.figure, `${fmt(r.value)} ${r.unit}`, `${fmt(r.floor)} ${r.unit}`, `${r.ratio.toFixed(2)}×`, r.target, r.met ? 'yes' : 'NO']);
}
console.log(`\n| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
for (const row of table) console.log(`| ${row.join(' | ')} |`);
console.log('');
for (const o of outcomes) console.log(`bench:${o.name}: ${o.failure ? `FAILED (${o.failure})` : o.note ?? `${o.rows.length} figure(s)`}, ${o.seconds.toFixed(0)} s`);
const failed = outcomes.filter((o) => o.failure);
if (failed.length) console.log(`failed: ${failed.map((o) => o.name).join(', ')}`);
process.exit(failed.length ? 1 : 0);
