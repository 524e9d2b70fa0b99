/**
 * bench/idle-cpu: what a fleet's size costs the control plane in CPU while
 * nothing happens. The control plane (the embedded broker and the three
 * services, SQLite, in this process) holds N members of one VPN, written
 * straight to its store (no agent is connected: what is measured is the
 * services' own timers, not polls or keepalives), and sits idle; its CPU
 * over --seconds is set beside the same control plane holding no member,
 * measured in the same run. Each measure starts after --settle seconds,
 * once the start's first full reconcile and the first ticks are behind it.
 *
 * What it watches (decision 126): the config server's idle loop (full
 * reconciles, spaced by their own length) and the key server's tick
 * (convergence, which asks the store for the members behind the epoch).
 * Anything that reads the whole fleet on a timer shows here as CPU that
 * grows with N.
 *
 *   npm run bench:idle-cpu -- --n 10000 --seconds 20 --runs 2 [--settle 5]
 */
import { parseArgs } from 'node:util';
import { addDevice } from '../servers/admin.js';
import { benchControlPlane, benchJson, benchMac, cpuMsSince, positiveArg, progressLine } from './common.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '10000' }, seconds: { type: 'string', default: '20' }, runs: { type: 'string', default: '2' }, settle: { type: 'string', default: '5' }, help: { type: 'boolean', default: false } } });
if (values.help) {
  console.log(`usage: npm run bench:idle-cpu -- [--n 10000] [--seconds 20] [--runs 2] [--settle 5]
  --n N         members of one VPN, written straight to the store (default 10000)
  --seconds S   the idle time measured, each run and each side (default 20)
  --runs R      runs; each measures the floor (no member) and N members (default 2)
  --settle S    seconds idle before each measure starts (default 5)`);
  process.exit(0);
}
const N = positiveArg('bench:idle-cpu', 'n', values.n);
const SECONDS = positiveArg('bench:idle-cpu', 'seconds', values.seconds);
const RUNS = positiveArg('bench:idle-cpu', 'runs', values.runs);
const SETTLE = positiveArg('bench:idle-cpu', 'settle', values.settle);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The control plane's CPU while idle with `members` members, in percent of one core. */
async function idleCpu(members: number): Promise<number> {
  const { cp, crypto, close } = await benchControlPlane();
  try {
    for (let i = 0; i < members; i++) {
      await addDevice(cp.store, cp.keys, crypto, { id: `t${i}`, mac: benchMac(i), kind: 'terminal', broker: cp.brokerUrl });
      progressLine('devices', i + 1, members, 1000);
    }
    if (members > 0) await cp.store.putSessionKey({ vpnId: 'plant', epoch: 1, key: crypto.randomBytes(32), createdAt: Date.now() });
    for (let i = 0; i < members; i++) {
      await cp.store.putNetworkInfo({ deviceId: `t${i}`, address: '127.0.0.1', relayId: null, relayPort: null, updatedAt: Date.now() });
      // Every member holds the current epoch: convergence has nobody to push to.
      await cp.store.putMember({ vpnId: 'plant', deviceId: `t${i}`, userId: 'bench', keyId: 1, networkId: '127.0.0.1' });
    }
    await sleep(SETTLE * 1000);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(SECONDS * 1000);
    return (100 * cpuMsSince(cpu0)) / (performance.now() - t0);
  } finally {
    await close();
  }
}

console.log(`idle CPU: the control plane (one process) with ${N} members written to its store, nothing connected, ${SECONDS} s after ${SETTLE} s idle; floor: no member`);
const rows = [];
for (let run = 1; run <= RUNS; run++) {
  const floor = await idleCpu(0);
  const kagi = await idleCpu(N);
  console.log(`run ${run}: ${N} members ${kagi.toFixed(1)}% of a core, no member ${floor.toFixed(1)}%: ${(kagi / floor).toFixed(1)}x, ${(((kagi - floor) * 1000) / N).toFixed(2)} points per 1,000 members`);
  rows.push({ kagi, floor });
}
const last = rows[rows.length - 1]!;
benchJson([{ figure: `control plane CPU while idle, ${N} members`, value: last.kagi, unit: '% of a core', floor: last.floor, ratio: last.kagi / last.floor, target: 'none (reported)', met: true }]);
process.exit(0);
