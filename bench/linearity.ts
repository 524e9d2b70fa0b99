/**
 * bench/linearity: does any cost grow faster than the fleet (issue 22)? N
 * terminals (the real agent, each with its own MQTT connection, kept
 * connected) join `kagi up` in its own process a thousand (--step) at a
 * time, and each step's joins/s is printed; then they leave a step at a
 * time, and each step's leaves/s (until the store holds the step's members
 * no more) is printed. A cost per join or leave that grew with the fleet
 * (a scan of every member, every retained topic) makes the last step
 * slower than the first: the figure is the step at the fullest fleet
 * against the step at the smallest (target: its time within 10%), for
 * joins (the last step against the first) and for leaves (the first step,
 * from the fullest fleet, against the last).
 *
 * The user's password is hashed cheaply here (bench/common.ts seedFleet),
 * so the hash does not hide the rest. On --broker mosquitto the
 * connections are held by a Mosquitto this bench starts and `kagi up
 * --broker` runs only the services.
 *
 *   npm run bench:linearity -- [--n 10000] [--step 1000] [--concurrency 100] [--broker embedded|mosquitto]
 */
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TerminalAgent } from '../device/terminal.js';
import { MemorySecretStore } from '../device/tickets.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { benchJson, mark, pool, positiveArg, seedFleet, startChild, stopChild, type BenchRow } from './common.js';
import { Mosquitto } from './mosquitto.js';
import { DB_FILE } from '../servers/data-dir.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '10000' },
    step: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '100' },
    broker: { type: 'string', default: 'embedded' },
    'cpu-prof': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`usage: npm run bench:linearity -- [--n 10000] [--step 1000] [--concurrency 100] [--broker embedded|mosquitto]
  --n N            terminals, each with its own MQTT connection, all kept connected (default 10000)
  --step S         terminals per step: each step's joins/s and leaves/s are printed (default 1000)
  --concurrency C  joins (leaves) at a time (default 100)
  --broker B       embedded (default): kagi up's own broker holds the connections;
                   mosquitto: a Mosquitto the bench starts holds them (kagi up --broker)
  --cpu-prof DIR   write a V8 CPU profile of kagi up to DIR (KAGI_BENCH_MARKS=1 prints each phase's window)`);
  process.exit(0);
}
const positive = (name: string, v: string) => positiveArg('bench:linearity', name, v);
const N = positive('n', values.n);
const STEP = positive('step', values.step);
const C = positive('concurrency', values.concurrency);
if (values.broker !== 'embedded' && values.broker !== 'mosquitto') {
  console.error(`bench:linearity: --broker must be embedded or mosquitto, not ${values.broker}`);
  process.exit(2);
}
if (N < 2 * STEP) {
  console.error('bench:linearity: --n must be at least two steps (--help)');
  process.exit(2);
}
const STEPS = Math.floor(N / STEP);
/** Within this of the first step's rate, the last step's is "not slower". */
const TOLERANCE = 0.1;

/** `kagi up` on `data`, ready: its broker URL. */
function startKagiUp(data: string, brokerUrl: string | undefined): Promise<{ child: ChildProcess; url: string }> {
  const where = brokerUrl ? ['--broker', brokerUrl] : ['--port', '0'];
  const prof = values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof']] : [];
  return startChild([...prof, 'dist/cli/kagi.js', 'up', '--data', data, ...where, '--timeout', '60s', '--log-format', 'json'], /kagi up: broker (\S+),/);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const root = mkdtempSync(join(tmpdir(), 'kagi-linearity-'));
const data = join(root, 'data');
const mosquitto = values.broker === 'mosquitto' ? await Mosquitto.start(['max_queued_messages 100000']) : undefined;
let up: { child: ChildProcess; url: string } | undefined;
const agents: TerminalAgent[] = [];
try {
  const bundles = await seedFleet(data, N, (i) => `l${i}`);
  up = await startKagiUp(data, mosquitto?.url);
  const url = up.url;
  // The members the store holds, read beside kagi up (WAL: a reader never blocks it).
  const db = new Database(join(data, DB_FILE), { readonly: true, fileMustExist: true });
  const members = db.prepare('SELECT COUNT(*) AS n FROM members');
  const count = () => (members.get() as { n: number }).n;

  console.log(`linearity: ${N} terminals, ${STEP} a step, ${C} at a time, each its own MQTT connection kept open; ${mosquitto ? 'the connections on a Mosquitto (kagi up --broker)' : "kagi up's embedded broker"}`);
  const joins: number[] = [];
  for (let s = 0; s < STEPS; s++) {
    mark(`join-${s}`);
    const t0 = performance.now();
    await pool(s * STEP, (s + 1) * STEP, C, async (i) => {
      const a = new TerminalAgent(bundles[i]!, { ...nodePlatform({ brokerUrl: url }), secrets: new MemorySecretStore() }, { timeoutMs: 60_000, attempts: Infinity });
      agents[i] = a;
      await a.start();
      await a.configure();
      await a.join('bench', 'bench-password');
    });
    joins.push(STEP / ((performance.now() - t0) / 1000));
    console.log(`  joins ${s * STEP + 1}–${(s + 1) * STEP}: ${joins[s]!.toFixed(1)} joins/s`);
  }
  const leaves: number[] = [];
  for (let s = STEPS - 1; s >= 0; s--) {
    mark(`leave-${s}`);
    const t0 = performance.now();
    const target = s * STEP;
    await pool(s * STEP, (s + 1) * STEP, C, (i) => agents[i]!.stop());
    // A leave is done when the store no longer holds the member.
    while (count() > target) await sleep(20);
    leaves.push(STEP / ((performance.now() - t0) / 1000));
    console.log(`  leaves ${(s + 1) * STEP}–${s * STEP + 1}: ${leaves.at(-1)!.toFixed(1)} leaves/s`);
  }
  mark('end');
  db.close();
  /** The rate with the fleet at its smallest and at its fullest: a cost that grew with the fleet makes the second slower. */
  const judge = (what: string, atSmallest: number, atFullest: number): BenchRow => {
    const ratio = atSmallest / atFullest;
    console.log(`  ${what}: ${atSmallest.toFixed(1)}/s with the fleet at its smallest, ${atFullest.toFixed(1)}/s at its fullest: ${ratio.toFixed(2)}x the time (target: at most ${(1 + TOLERANCE).toFixed(2)}x)`);
    return { figure: `${what} with ${N} in the fleet vs with none (${STEP} each, ${mosquitto ? 'Mosquitto' : 'embedded'})`, value: atFullest, unit: '/s', floor: atSmallest, ratio, target: `≤ ${1 + TOLERANCE}× the time`, met: ratio <= 1 + TOLERANCE };
  };
  // Joins went from the smallest fleet up, leaves from the fullest down.
  benchJson([judge('joins', joins[0]!, joins.at(-1)!), judge('leaves', leaves.at(-1)!, leaves[0]!)]);
} finally {
  await Promise.all(agents.map((a) => a?.stop({ leave: false }).catch(() => {})));
  if (up) await stopChild(up.child);
  await mosquitto?.stop();
  rmSync(root, { recursive: true, force: true });
}
process.exit(0);
