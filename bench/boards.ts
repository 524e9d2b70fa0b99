/**
 * bench/boards: per board profile, the bundle's size (minified, gzip)
 * against its flash budget; for QuickJS terminals, the VM's heap peak
 * through configure + join and the time of configure + join in QuickJS,
 * beside the same join by the same agent code on Node (portable crypto,
 * as on the board, and node:crypto) against the same services, measured
 * in the same run. Median of --runs joins, each a fresh device.
 *
 *   npm run bench:boards -- --runs 5
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { addDevice } from '../servers/admin.js';
import { benchControlPlane, benchJson, type BenchRow } from './common.js';
import { buildBundle, formatSize } from '../cli/bundle/build.js';
import { listProfiles, loadProfile } from '../runtime/node/board-profiles.js';
import { QuickJsBoard } from '../runtime/quickjs/board-host.js';
import { parseBundle } from '../device/bundle.js';
import { TerminalAgent } from '../device/terminal.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { portableCrypto } from '../protocol/crypto/portable.js';
import type { ControlPlane } from '../servers/control-plane.js';
import type { Crypto } from '../protocol/crypto/backend.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const RUNS = Math.max(1, Number(values.runs));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
let devices = 0;

async function newDevice(cp: ControlPlane, crypto: Crypto): Promise<Record<string, unknown>> {
  const n = ++devices;
  return (await addDevice(cp.store, cp.keys, crypto, { id: `b${n}`, mac: `02:00:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`, kind: 'terminal', broker: cp.brokerUrl })) as unknown as Record<string, unknown>;
}

async function quickjsJoin(code: string, cp: ControlPlane, crypto: Crypto, ramBytes: number): Promise<{ ms: number; peak: number; base: number }> {
  const board = await QuickJsBoard.load(code, { brokerUrl: cp.brokerUrl, memoryLimit: ramBytes });
  try {
    board.storage.set('device', JSON.stringify(await newDevice(cp, crypto)));
    await board.run('kagiBoard.start({ timeoutMs: 60000 }).then((a) => (globalThis.agent = a, a.id))');
    board.resetPeak();
    const base = board.heap();
    const t0 = performance.now();
    await board.run('agent.configure().then(() => agent.join("bench", "bench-password"))');
    const ms = performance.now() - t0;
    const peak = board.peakHeap;
    await board.run('agent.stop()');
    return { ms, peak, base };
  } finally {
    board.dispose();
  }
}

async function nodeJoin(cp: ControlPlane, crypto: Crypto, portable: boolean): Promise<number> {
  const b = parseBundle(await newDevice(cp, crypto));
  const p = nodePlatform({ brokerUrl: cp.brokerUrl });
  const a = new TerminalAgent(b, portable ? { ...p, crypto: portableCrypto((buf) => void randomFillSync(buf)) } : p, { timeoutMs: 60_000 });
  await a.start();
  const t0 = performance.now();
  await a.configure();
  await a.join('bench', 'bench-password');
  const ms = performance.now() - t0;
  await a.stop();
  return ms;
}

async function main(): Promise<void> {
  console.log(`bench/boards: bundles per profile; QuickJS joins vs Node joins, median of ${RUNS}\n`);
  const { cp, crypto, close } = await benchControlPlane();
  try {
    // Floors first, in the same run: the same join on Node.
    const nodeNative: number[] = [];
    const nodePortable: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      nodeNative.push(await nodeJoin(cp, crypto, false));
      nodePortable.push(await nodeJoin(cp, crypto, true));
    }
    const floorNative = median(nodeNative);
    const floorPortable = median(nodePortable);
    const rows: BenchRow[] = [];
    console.log(`floor: configure + join on Node: ${floorNative.toFixed(0)} ms (node:crypto), ${floorPortable.toFixed(0)} ms (portable crypto)\n`);
    console.log('| profile | runtime | bundle min | gzip | flash budget | heap peak in join | configure + join | vs Node (portable) | vs Node (node:crypto) |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const name of listProfiles()) {
      const p = loadProfile(name);
      const r = await buildBundle(p);
      let heap = 'n/a';
      let time = 'n/a';
      let vsPortable = '';
      let vsNative = '';
      if (p.runtime === 'quickjs' && p.role === 'terminal') {
        const code = readFileSync(r.file, 'utf8');
        const runs = [];
        for (let i = 0; i < RUNS; i++) runs.push(await quickjsJoin(code, cp, crypto, p.budget.ramBytes));
        const ms = median(runs.map((x) => x.ms));
        const peak = Math.max(...runs.map((x) => x.peak));
        heap = `${formatSize(peak)} (${formatSize(peak - Math.min(...runs.map((x) => x.base)))} above idle)`;
        time = `${ms.toFixed(0)} ms`;
        vsPortable = `${(ms / floorPortable).toFixed(1)}×`;
        vsNative = `${(ms / floorNative).toFixed(1)}×`;
        rows.push({ figure: `QuickJS configure + join, ${name}`, value: ms, unit: 'ms', floor: floorPortable, ratio: ms / floorPortable, target: 'none (reported)', met: true });
      } else if (p.runtime === 'xs') {
        heap = 'no XS engine here';
      } else if (p.runtime === 'node' && p.role === 'terminal') {
        time = `${floorNative.toFixed(0)} ms`;
      }
      const row = `| ${name} | ${p.runtime} ${p.role} | ${formatSize(r.bytes)} | ${formatSize(r.gzipBytes)} | ${formatSize(p.budget.flashBytes)} | ${heap} | ${time} | ${vsPortable} | ${vsNative} |`;
      console.log(row);
    }
    benchJson(rows);
  } finally {
    await close();
  }
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    console.error(`bench/boards: ${e.message}`);
    process.exit(1);
  },
);
