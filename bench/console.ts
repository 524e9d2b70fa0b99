/**
 * bench/console: what the web console's live view costs the control plane.
 * While a page watches, the console reads the fleet from the tables every
 * tick (servers/console/fleet-feed.ts: kagi status's view, the audit log,
 * recent events) and serialises it. Timed here for a fleet of N devices in
 * V VPNs (SQLite), beside a floor measured in the same run on the same
 * tables: one read of the devices table and of presence, the least any
 * "who is online" view must do. After a warm-up, --runs runs of each;
 * prints medians, the ratio, and the snapshot's size.
 *
 *   npm run bench:console -- --n 10000 --vpns 20 --runs 7
 */
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { SqliteStore } from '../servers/store/sqlite.js';
import { addVpn } from '../servers/admin.js';
import { Metrics } from '../servers/metrics.js';
import { FleetFeed, READ_SHARE } from '../servers/console/fleet-feed.js';
import { RecentEvents } from '../servers/console/recent.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '10000' }, vpns: { type: 'string', default: '20' }, runs: { type: 'string', default: '7' } } });
const N = Number(values.n);
const V = Number(values.vpns);
const RUNS = Number(values.runs);
if (![N, V, RUNS].every((x) => Number.isInteger(x) && x > 0)) throw new Error('--n, --vpns and --runs must be positive integers');

const crypto = nodeCrypto();
const dir = mkdtempSync(join(tmpdir(), 'kagi-bench-console-'));
const store = new SqliteStore(dir);

async function seed(): Promise<void> {
  const now = Date.now();
  for (let v = 0; v < V; v++) {
    await addVpn(store, { id: `vpn-${v}`, protocol: 'tcp', port: 6000 + v });
    await store.putSessionKey({ vpnId: `vpn-${v}`, epoch: 1, key: crypto.randomBytes(32), createdAt: now });
  }
  // A user row with a placeholder hash: nobody logs in here.
  await store.addUser({ id: 'bench', passwordHash: 'scrypt$bench' } as never);
  for (let i = 0; i < N; i += 500) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + 500); j++) {
      const id = `dev-${j}`;
      batch.push((async () => {
        await store.addDevice({ id, mac: `02:00:${((j >> 16) & 255).toString(16).padStart(2, '0')}:${((j >> 8) & 255).toString(16).padStart(2, '0')}:${(j & 255).toString(16).padStart(2, '0')}:00`, publicKey: crypto.randomBytes(32), kind: 'terminal' });
        await store.putMember({ vpnId: `vpn-${j % V}`, deviceId: id, userId: 'bench', keyId: 1, networkId: `n${j}` });
        await store.setPresence(id, j % 10 !== 0, now, 'mqtt://127.0.0.1:1883');
      })());
    }
    await Promise.all(batch);
  }
}

async function time(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  await seed();
  const feed = new FleetFeed({ store, metrics: new Metrics(), recent: new RecentEvents() });
  const floor = async () => JSON.stringify([await store.listDevices(), [...(await store.presence())]]);
  let size = 0;
  const consoleRead = async () => (size = JSON.stringify(await feed.fleet()).length);
  for (let i = 0; i < 2; i++) await Promise.all([floor(), consoleRead()]); // warm-up
  const f: number[] = [];
  const c: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    // Interleaved, so a noisy neighbour hits both alike.
    f.push(await time(floor));
    c.push(await time(consoleRead));
  }
  feed.close();
  console.log(`bench:console  N=${N} devices in ${V} VPNs, ${RUNS} runs (medians)`);
  console.log(`  floor (devices + presence)      ${median(f).toFixed(1)} ms`);
  console.log(`  console fleet read + JSON       ${median(c).toFixed(1)} ms   ratio ${(median(c) / median(f)).toFixed(2)}   snapshot ${(size / 1024).toFixed(0)} KiB`);
  const every = Math.max(500, median(c) / READ_SHARE);
  console.log(`  while a page watches: one read every ${every.toFixed(0)} ms, ${((100 * median(c)) / every).toFixed(0)}% of the event loop`);
  console.log(`  runs: floor ${f.map((x) => x.toFixed(0)).join(' ')}; console ${c.map((x) => x.toFixed(0)).join(' ')}`);
}

main().finally(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}).catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
