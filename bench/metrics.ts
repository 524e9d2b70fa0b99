/**
 * bench/metrics: what one `Metrics.count` costs on prom-client (servers/
 * metrics.ts) against a floor measured in the same run: the hand-written
 * counter kagi had before (a label string, sorted by name, into a Map),
 * for a counter without labels, with one label and with two. The broker
 * counts every forwarded frame, so this is on the data path.
 *
 *   npm run bench:metrics -- --runs 5
 *
 * Prints per run ops/s of each and the ratio floor/prom-client (how many
 * times slower a count is now), then the median ratio over the runs.
 */
import { parseArgs } from 'node:util';
import { Metrics } from '../servers/metrics.js';
import { opsPerSecond } from './common.js';

const { values: v } = parseArgs({ options: { runs: { type: 'string', default: '5' }, ms: { type: 'string', default: '400' } } });
const RUNS = Number(v.runs);
const BUDGET_MS = Number(v.ms);
if (!(RUNS >= 1) || !(BUDGET_MS >= 50)) throw new Error('--runs must be at least 1 and --ms at least 50');

/** The floor: kagi's counter before prom-client (servers/metrics.ts up to issue 24). */
class HandWritten {
  private readonly values = new Map<string, Map<string, number>>();
  count(name: string, labels: Record<string, string> = {}, by = 1): void {
    const keys = Object.keys(labels).sort();
    const k = keys.length ? `{${keys.map((x) => `${x}="${labels[x]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',')}}` : '';
    let m = this.values.get(name);
    if (!m) this.values.set(name, (m = new Map()));
    m.set(k, (m.get(k) ?? 0) + by);
  }
}

/** Ops per second of `op` for about BUDGET_MS, after a warm-up (a counter is cheap: big batches). */
const rate = (op: () => void) => opsPerSecond(op, BUDGET_MS, { warmup: 10_000, batch: 1000 });

const CASES = [
  ['no labels', 'kagi_frames_forwarded_total', {}],
  ['one label', 'kagi_frames_dropped_total', { reason: 'cut' }],
  ['two labels', 'kagi_messages_dropped_total', { service: 'config', reason: 'replay' }],
] as const;

const ratios = new Map<string, number[]>();
for (let run = 1; run <= RUNS; run++) {
  const prom = new Metrics();
  const floor = new HandWritten();
  for (const [what, name, labels] of CASES) {
    const f = rate(() => floor.count(name, labels));
    const p = rate(() => prom.count(name, labels));
    const r = f / p;
    (ratios.get(what) ?? ratios.set(what, []).get(what)!).push(r);
    console.log(`run ${run}  ${what.padEnd(10)}  floor ${(f / 1e6).toFixed(2).padStart(6)} M/s  prom-client ${(p / 1e6).toFixed(2).padStart(6)} M/s  floor/prom-client ${r.toFixed(2)}`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const [what, rs] of ratios) console.log(`median over ${RUNS} runs  ${what.padEnd(10)}  floor/prom-client ${median(rs).toFixed(2)}`);
