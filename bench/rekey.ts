/**
 * bench/rekey: the key server rekeys a VPN of N members (default 10,000):
 * a new epoch wrapped for each member under its keys channel (one AEAD per
 * member), each member acknowledging. Timed until every member holds the
 * new epoch and until the key server has every acknowledgement, beside a
 * floor measured in the same run on the same broker: one client publishing
 * N messages of the same size to the same N inboxes.
 *
 * Members are simulated (each a real Peer with its own channel keys and
 * replay guard), sharing --connections MQTT connections, in a worker
 * thread (bench/rekey-members.ts): on a fleet each member is a device of
 * its own, so what members do to open an update and acknowledge it must
 * not run on the key server's thread (decision 111). The floor's members
 * count in the same worker. The broker is plain aedes for both runs, in
 * the key server's process as in `kagi up`, so the ratio is kagi's own
 * cost.
 *
 *   npm run bench:rekey -- --n 10000 --connections 20
 */
import { Metrics } from '../servers/metrics.js';
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { benchJson, floorBroker, mark, noDelay, rekeyMember as memberId } from './common.js';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { SqliteStore } from '../servers/store/sqlite.js';
import { loadServiceKeys } from '../servers/identity.js';
import { startKeys } from '../servers/keys/keys.js';
import { topics } from '../protocol/topics.js';
import { Worker } from 'node:worker_threads';
import type { MembersData } from './rekey-members.js';
import { sealRequest } from '../protocol/sealed.js';
import { GROUP_KEY_LENGTH } from '../protocol/vpn-frame.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '10000' }, connections: { type: 'string', default: '20' }, broker: { type: 'string' }, help: { type: 'boolean', default: false } } });
if (values.help) {
  console.log(`usage: npm run bench:rekey -- [--n 10000] [--connections 20] [--broker mqtt://HOST:PORT]
  --n N            members of the VPN rekeyed (default 10000)
  --connections K  MQTT connections the simulated members share (default 20)
  --broker URL     run both the floor and kagi on this broker (a Mosquitto, anonymous access)
                   instead of plain aedes in the key server's process`);
  process.exit(0);
}
const N = Number(values.n);
const K = Math.max(1, Math.min(N, Number(values.connections)));
if (!Number.isInteger(N) || N < 1) throw new Error('--n must be a positive integer');
const crypto = nodeCrypto();

/** The members in a worker thread (bench/rekey-members.ts): `all` resolves once every member has its message. */
async function members(data: MembersData): Promise<{ all: Promise<number>; close(): Promise<void> }> {
  const w = new Worker(new URL('./rekey-members.js', import.meta.url), { workerData: data });
  const failed = new Promise<never>((_, reject) => w.once('error', reject));
  const next = (what: 'ready' | 'all' | 'closed') => Promise.race([failed, new Promise<Record<string, number>>((r) => {
    const on = (m: Record<string, number>) => m[what] && (w.off('message', on), r(m));
    w.on('message', on);
  })]);
  const all = next('all').then((m) => m.bytes!);
  all.catch(() => {});
  await next('ready');
  return {
    all,
    close: async () => {
      const closed = next('closed');
      w.postMessage({ close: true });
      await closed;
      await w.terminate();
    },
  };
}

async function kagiRun(url: string): Promise<{ membersMs: number; acksMs: number; bytes: number; hpkeMsEach: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'kagi-bench-rekey-'));
  const store = new SqliteStore(dir);
  const keys = loadServiceKeys(dir, crypto);
  await store.addVpn({ id: 'plant', protocol: 'tcp', port: 5020, priority: 0, maxBandwidth: 0, flag: 0, totalRate: 0 });
  await store.putSessionKey({ vpnId: 'plant', epoch: 1, key: crypto.randomBytes(GROUP_KEY_LENGTH), createdAt: Date.now() });
  const book = store.channels('keys');
  const channels: { send: Uint8Array; recv: Uint8Array }[] = [];
  process.stdout.write(`seeding ${N} members…`);
  for (let i = 0; i < N; i++) {
    const m = memberId(i);
    await store.addDevice({ id: m, mac: '02:00:00:00:00:01', publicKey: crypto.randomBytes(32), kind: 'terminal' });
    await store.putMember({ vpnId: 'plant', deviceId: m, userId: 'bench', keyId: 1, networkId: 'bench' });
    const up = crypto.randomBytes(32);
    const down = crypto.randomBytes(32);
    await book.set(m, { send: down, recv: up });
    channels.push({ send: up, recv: down });
    if (i % 1000 === 999) process.stdout.write('.');
  }
  console.log(' done');
  const sims = await members({ url, n: N, k: K, channels, serverKey: keys.keys.publicKey });
  const svc = await startKeys({ crypto, store, keys, brokerUrl: url, brokerAuth: 'none', timeoutMs: 120_000, metrics: new Metrics(), log: () => {} }, { rekeyPeriodMs: 0, tickMs: 3_600_000 });

  mark('rekey-start');
  const t0 = performance.now();
  const done = svc.rekey('plant', 'bench');
  const bytes = await sims.all;
  const membersMs = performance.now() - t0;
  const r = await done;
  const acksMs = performance.now() - t0;
  mark('rekey-end');
  if (r.failed) console.log(`warning: ${r.failed} members did not acknowledge`);
  const moved = (await store.members('plant')).filter((m) => m.keyId === r.epoch).length;
  if (moved !== N) console.log(`warning: only ${moved}/${N} members at the new key id in the VPN table`);

  // What one HPKE seal per member (the alternative) would cost, for scale.
  const pk = crypto.generateKeyPair().publicKey;
  const sk = crypto.randomBytes(32);
  const h0 = performance.now();
  for (let i = 0; i < 200; i++) sealRequest(crypto, { type: 'keys.deliver', from: 'keys', to: 'm0', seq: i + 1, reqId: 1 }, sk, pk, { vpns: [] }, 0, 0).secrets.destroy();
  const hpkeMsEach = (performance.now() - h0) / 200;

  await svc.close();
  await sims.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  return { membersMs, acksMs, bytes, hpkeMsEach };
}

/** The floor: one client publishes N messages of `size` bytes to the N inboxes, counted in the same worker. */
async function floorRun(url: string, size: number): Promise<number> {
  const sims = await members({ url, n: N, k: K });
  const pub = noDelay(await mqtt.connectAsync(url, { clientId: `floor-${Math.random().toString(16).slice(2)}`, clean: true }));
  const payload = Buffer.alloc(size, 7);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: N }, (_, i) => pub.publishAsync(topics.inbox(memberId(i)), payload, { qos: 1 })));
  await sims.all;
  const ms = performance.now() - t0;
  await pub.endAsync();
  await sims.close();
  return ms;
}

const broker = values.broker ? { url: values.broker, close: async () => {} } : await floorBroker();
try {
  const k = await kagiRun(broker.url);
  const floor = await floorRun(broker.url, k.bytes);
  console.log(`rekey of ${N} members over ${K} connections (update ${k.bytes} bytes), broker ${values.broker ?? 'plain aedes in this process'}`);
  console.log(`  floor: ${N} publishes of ${k.bytes} bytes delivered   ${floor.toFixed(0)} ms`);
  console.log(`  kagi:  every member holds the new epoch            ${k.membersMs.toFixed(0)} ms   ratio ${(k.membersMs / floor).toFixed(2)}`);
  console.log(`  kagi:  every acknowledgement recorded              ${k.acksMs.toFixed(0)} ms   ratio ${(k.acksMs / floor).toFixed(2)}`);
  console.log(`  for scale: one HPKE seal per member would add ~${(k.hpkeMsEach * N).toFixed(0)} ms of sender CPU (${(k.hpkeMsEach * 1000).toFixed(0)} µs each)`);
  benchJson([{ figure: `rekey of ${N} members, until all hold the key`, value: k.membersMs / 1000, unit: 's', floor: floor / 1000, ratio: k.membersMs / floor, target: '≤ 2×', met: k.membersMs / floor <= 2 }]);
} finally {
  await broker.close();
}
