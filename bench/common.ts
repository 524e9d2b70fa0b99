/** What the benchmarks share: a bare-MQTT floor broker and a seeded control plane. */
import { mkdtempSync, readFileSync, rmSync, type WriteStream } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import type mqtt from 'mqtt';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../servers/control-plane.js';
import { randomBytes, scryptSync } from 'node:crypto';
import { addDevice, addUser, addVpn, grant } from '../servers/admin.js';
import { SqliteStore } from '../servers/store/sqlite.js';
import { loadServiceKeys } from '../servers/identity.js';
import { parseBundle, type Bundle } from '../device/bundle.js';
import { LISTEN_BACKLOG } from '../broker/broker.js';

/** Plain aedes on an ephemeral port: the floor the kagi figures are divided by. */
export async function floorBroker(): Promise<{ url: string; close(): Promise<void> }> {
  const aedes = await Aedes.createBroker();
  const server = createServer((sock) => (sock.setNoDelay(true), aedes.handle(sock)));
  // The same backlog as kagi's broker, so a storm's floor is comparable.
  await new Promise<void>((r) => server.listen({ port: 0, host: '127.0.0.1', backlog: LISTEN_BACKLOG }, r));
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await new Promise<void>((r) => aedes.close(() => r()));
      server.close();
    },
  };
}

/** Same socket option as kagi's own links, so the floor is comparable. */
export function noDelay(c: mqtt.MqttClient): mqtt.MqttClient {
  (c.stream as unknown as { setNoDelay(v: boolean): void }).setNoDelay(true);
  return c;
}

/** A control plane in a temp dir with VPN 'plant' and user 'bench' granted to it. */
export async function benchControlPlane(o: Pick<ControlPlaneOptions, 'password'> = {}): Promise<{ cp: ControlPlane; crypto: ReturnType<typeof nodeCrypto>; close(): Promise<void> }> {
  const crypto = nodeCrypto();
  const dir = mkdtempSync(join(tmpdir(), 'kagi-bench-'));
  const cp = await startControlPlane({ dataDir: dir, crypto, port: 0, timeoutMs: 60_000, ...o });
  await addVpn(cp.store, { id: 'plant', protocol: 'tcp', port: 5020 });
  await addUser(cp.store, 'bench', 'bench-password');
  await grant(cp.store, 'plant', 'bench');
  return {
    cp,
    crypto,
    close: async () => {
      await cp.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One figure of a bench, as `npm run bench` (bench/all.ts) tabulates it. */
export interface BenchRow {
  figure: string;
  value: number;
  unit: string;
  floor: number;
  ratio: number;
  /** What the figure should reach, in words ("≤ 2×", "≥ 80%", "≤ 4 KiB"). */
  target: string;
  met: boolean;
}

/** With KAGI_BENCH_JSON=1, the bench's last line: `BENCH_JSON ` + the rows, for bench/all.ts. */
export function benchJson(rows: BenchRow[]): void {
  if (process.env.KAGI_BENCH_JSON === '1') console.log(`BENCH_JSON ${JSON.stringify(rows)}`);
}

/** This process's CPU time (user + system, every thread) since `before`, in ms. */
export function cpuMsSince(before: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(before);
  return (d.user + d.system) / 1000;
}

/**
 * Another process's CPU time so far (user + system, ms), from
 * /proc/PID/stat (Linux; clock ticks of 10 ms); undefined where there is none.
 */
export function childCpuMs(pid: number | string | undefined): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // after the command name, which may hold spaces
    return (Number(f[11]) + Number(f[12])) * 10; // utime, stime (fields 14 and 15)
  } catch {
    return undefined;
  }
}

/** This process's main thread's CPU time so far (ms; Linux's /proc), without its worker and hash threads. */
export const mainThreadCpuMs = (): number | undefined => childCpuMs(`${process.pid}/task/${process.pid}`);

/** The host's CPU time so far, busy and idle (ms, from /proc/stat's cpu line); undefined where there is none. */
export function hostCpuMs(): { busy: number; idle: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3]! + f[4]!; // idle, iowait
    return { busy: (f.slice(0, 8).reduce((a, b) => a + b, 0) - idle) * 10, idle: idle * 10 };
  } catch {
    return undefined;
  }
}

/** job(i) for i in [from, to), at most c at a time. */
export async function pool(from: number, to: number, c: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = from;
  await Promise.all(Array.from({ length: Math.min(c, to - from) }, async () => {
    while (next < to) await job(next++);
  }));
}

/** The value at percentile p (0–100) of ascending `sorted`. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** "what: done/total" on stderr every `every` and at the end (one line, rewritten). */
export function progressLine(what: string, done: number, total: number, every: number): void {
  if (done % every === 0 || done === total) process.stderr.write(`\r  ${what}: ${done}/${total}   ${done === total ? '\n' : ''}`);
}

/** Terminal i's MAC (02:00:00 and i in the last three bytes), as the benches' fleets are registered. */
export const benchMac = (i: number): string => `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** scrypt$N$r$p$salt$hash as servers/auth/password.ts reads it, at N=1024: set-ups where scrypt is not what is measured. */
export function cheapHash(password: string): string {
  const salt = randomBytes(16);
  return ['scrypt', 1024, 8, 1, salt.toString('hex'), scryptSync(password, salt, 32, { N: 1024, r: 8, p: 1 }).toString('hex')].join('$');
}

/**
 * A data dir for `kagi up` in its own process: VPN plant, user bench
 * (password bench-password, cheap hash) granted it, and N terminals named
 * id(i). Their broker URL is a placeholder: the agents are told the real one.
 */
export async function seedFleet(data: string, n: number, id: (i: number) => string, progress?: (done: number) => void): Promise<Bundle[]> {
  const crypto = nodeCrypto();
  const s = new SqliteStore(data);
  const keys = loadServiceKeys(data, crypto);
  await addVpn(s, { id: 'plant', protocol: 'tcp', port: 5020 });
  await s.addUser({ id: 'bench', passwordHash: cheapHash('bench-password') });
  await grant(s, 'plant', 'bench');
  const out: Bundle[] = [];
  for (let i = 0; i < n; i++) {
    out.push(parseBundle(await addDevice(s, keys, crypto, { id: id(i), mac: benchMac(i), kind: 'terminal', broker: 'mqtt://127.0.0.1:1' })));
    progress?.(i + 1);
  }
  await s.close();
  return out;
}

/** A command-line value that must be a whole number ≥ 1; anything else ends the bench with exit code 2, naming the flag. */
export function positiveArg(bench: string, name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`${bench}: --${name} must be a whole number ≥ 1, not ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

/**
 * With KAGI_BENCH_MARKS set: a phase's start and end on stderr, in the
 * clock of a --cpu-prof profile's timestamps (µs), to cut the phase out.
 */
export function mark(label: string): void {
  if (process.env.KAGI_BENCH_MARKS) console.error(`mark ${label} ${process.hrtime.bigint() / 1000n}`);
}

/** bench/rekey's member i (its worker names them the same). */
export const rekeyMember = (i: number) => `m${i}`;

/** A free loopback port (closed again before its user binds it). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * `op` run for about `budgetMs` after `warmup` calls, in batches of
 * `batch` between clock reads (cheap ops need large batches so the clock
 * does not dominate); ops per second.
 */
export function opsPerSecond(op: () => void, budgetMs: number, o: { warmup: number; batch: number }): number {
  for (let i = 0; i < o.warmup; i++) op();
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < budgetMs) {
    for (let i = 0; i < o.batch; i++) op();
    n += o.batch;
    t = performance.now();
  }
  return (n * 1000) / (t - t0);
}

/**
 * A node child (a server the bench measures beside itself: kagi up, the
 * floor's broker) that prints `pattern`, holding a URL and optionally a
 * second one, once it is ready; its stdout also goes to `log` if given.
 */
export function startChild(args: string[], pattern: RegExp, log?: WriteStream): Promise<{ child: ChildProcess; url: string; metrics?: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  if (log) child.stdout!.pipe(log);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      if (out.length < 100_000) out += d;
      const m = pattern.exec(out);
      if (m) resolve({ child, url: m[1]!, ...(m[2] ? { metrics: m[2] } : {}) });
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out.slice(-2000)}`)));
  });
}

/** SIGTERM to a child from startChild; resolves once it has exited. */
export function stopChild(c: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve(); // exited, or killed by a signal
    c.once('exit', () => resolve());
    c.kill('SIGTERM');
  });
}
