/** A control plane on the embedded broker (port 0) in a temp data dir. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../servers/control-plane.js';
import { decodeEnvelope } from '../../protocol/envelope.js';
import type { MessageType } from '../../protocol/messages.js';
import { addDevice, addUser, addVpn, grant } from '../../servers/admin.js';
import { parseBundle, type Bundle } from '../../device/bundle.js';
import { TerminalAgent, type TerminalOptions } from '../../device/terminal.js';
import { nodePlatform } from '../../runtime/node/platform.js';
import type { Platform } from '../../device/platform.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import type { Store } from '../../servers/store/store.js';
import { loadServiceKeys } from '../../servers/identity.js';
import { deadline } from './deadline.js';
import { hashPassword } from '../../servers/auth/password.js';
import mqtt, { type MqttClient } from 'mqtt';
import { connectKey, connectPassword } from '../../protocol/connect-auth.js';

export const crypto = nodeCrypto();

export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'kagi-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  // Retries: a child process told to stop may still be writing its state.
  t.teardown(() => rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 }));
  return d;
}

/**
 * A temp data dir holding kagi data, as `kagi init` leaves it (admin
 * commands refuse a dir without): the services' keys and the tables.
 */
export function kagiDataDir(t: { teardown(fn: () => void): void }, prefix = 'kagi-'): string {
  const d = tempDir(t, prefix);
  loadServiceKeys(d, crypto);
  void new SqliteStore(d).close();
  return d;
}

export interface CpOptions {
  brokerUrl?: string;
  timeoutMs?: number;
  liveness?: ControlPlaneOptions['liveness'];
  rekeyPeriodMs?: number;
  linkCapacity?: number;
  /** The config server's idle reconcile period (ms). */
  reconcileMs?: number;
  /** postgres://… to keep the tables in PostgreSQL. */
  store?: string;
  /** Serve /metrics (0 = a free port). */
  metricsPort?: number;
  /** Collects every log line as "level: message". */
  lines?: string[];
  /** false: skip the data-dir lock, for tests that run two control planes on one dir on purpose. */
  lockDataDir?: boolean;
  /** The password check's hash pool and throttling. */
  password?: ControlPlaneOptions['password'];
  /** The embedded broker's per-device quotas. */
  quota?: ControlPlaneOptions['quota'];
  /** The config server's admission places (decision 128). */
  admitted?: number;
}

export async function controlPlane(dataDir: string, o: CpOptions = {}): Promise<ControlPlane> {
  return startControlPlane({
    dataDir, crypto, port: 0, timeoutMs: o.timeoutMs ?? deadline(5000),
    ...(o.brokerUrl ? { brokerUrl: o.brokerUrl } : {}),
    ...(o.liveness ? { liveness: o.liveness } : {}),
    ...(o.linkCapacity ? { linkCapacity: o.linkCapacity } : {}),
    ...(o.reconcileMs ? { reconcileMs: o.reconcileMs } : {}),
    ...(o.store ? { store: o.store } : {}),
    ...(o.metricsPort !== undefined ? { metricsPort: o.metricsPort } : {}),
    ...(o.rekeyPeriodMs !== undefined ? { rekeyPeriodMs: o.rekeyPeriodMs, keysTickMs: 100 } : {}),
    ...(o.lockDataDir === false ? { lockDataDir: false } : {}),
    ...(o.password ? { password: o.password } : {}),
    ...(o.quota ? { quota: o.quota } : {}),
    ...(o.admitted ? { admitted: o.admitted } : {}),
    log: (level, msg) => o.lines?.push(`${level}: ${msg}`),
  });
}

/** Wait until `cond` holds or `ms` pass; returns whether it held. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 3000): Promise<boolean> {
  const end = Date.now() + deadline(ms);
  while (!(await cond()) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return cond();
}

/**
 * Whether `p` has settled after `turns` turns of the event loop: for a
 * promise that must not settle before an event the test holds back (what
 * could go on has gone on by then).
 */
export async function settledAfter(p: Promise<unknown>, turns = 5): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
  return done;
}

/**
 * Until `get()` equals `want` (JSON): for state that follows an event a
 * step later (the network devices follow an eviction in the reconcile
 * after its log line).
 */
export function settles<T>(get: () => T | Promise<T>, want: T, ms?: number): Promise<boolean> {
  const w = JSON.stringify(want);
  return until(async () => JSON.stringify(await get()) === w, ms);
}

let macs = 0;
export async function device(cp: ControlPlane, id: string, kind: Bundle['kind'] = 'terminal'): Promise<Bundle> {
  const n = ++macs;
  const mac = `02:00:00:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
  return parseBundle(await addDevice(cp.store, cp.keys, crypto, { id, mac, kind, broker: cp.brokerUrl }));
}

/** scrypt hashes of test passwords, one per password per test process. */
const hashes = new Map<string, Promise<string>>();

/**
 * Add `user` as addUser does (same checks, same scrypt hash format), but
 * hash each password once per test process: a set-up that adds alice in
 * every subtest pays ~0.1–0.3 s of scrypt once, not each time. Logins
 * still verify against the stored hash as always. Tests of addUser
 * itself call it directly.
 */
export async function addTestUser(store: Store, user: string, password: string): Promise<void> {
  if (!hashes.has(password)) hashes.set(password, hashPassword(password));
  await addUser(store, user, password, await hashes.get(password)!);
}

export async function vpnWithUsers(cp: ControlPlane, vpn: string, port: number, users: Record<string, string>): Promise<void> {
  await addVpn(cp.store, { id: vpn, protocol: 'tcp', port });
  for (const [u, p] of Object.entries(users)) {
    await addTestUser(cp.store, u, p);
    await grant(cp.store, vpn, u);
  }
}

export interface AgentTestOptions extends TerminalOptions {
  brokerAuth?: 'counter' | 'static' | 'none';
  /** Sees every MQTT publish of the agent; `send` publishes raw bytes. */
  spy?(topic: string, bytes: Uint8Array, send: (topic: string, bytes: Uint8Array) => Promise<void>): void;
  /**
   * A faulty network between the agent and the broker: messages for which
   * `lose` says true are lost (in: arriving at the agent, out: leaving it).
   */
  lose?(dir: 'in' | 'out', topic: string, bytes: Uint8Array): boolean;
}

/** The control-message type of an MQTT payload, if it is one. */
export function typeOf(bytes: Uint8Array): MessageType | undefined {
  try {
    return decodeEnvelope(bytes).type;
  } catch {
    return undefined;
  }
}

/** A Node platform whose link can be watched by a test. */
export function testPlatform(brokerUrl: string, o: AgentTestOptions = {}): Platform {
  const p = nodePlatform({ brokerUrl, brokerAuth: o.brokerAuth });
  if (!o.spy && !o.lose) return p;
  return {
    ...p,
    async connect(l) {
      const lose = o.lose ?? (() => false);
      const link = await p.connect({ ...l, onMessage: (topic, bytes) => (lose('in', topic, bytes) ? undefined : l.onMessage(topic, bytes)) });
      const send = link.publish.bind(link);
      link.publish = async (topic, bytes, retain) => {
        o.spy?.(topic, bytes, send);
        if (!lose('out', topic, bytes)) await send(topic, bytes, retain);
      };
      return link;
    },
  };
}

export function agent(b: Bundle, brokerUrl: string, o: AgentTestOptions = {}): TerminalAgent {
  return new TerminalAgent(b, testPlatform(brokerUrl, o), { timeoutMs: deadline(3000), attempts: 2, ...o });
}

/**
 * Seed a data dir with no control plane running (as the admin CLI does):
 * one device, VPN 'plant' (tcp/5020) and user alice granted to it.
 */
export async function seedDataDir(data: string, o: { deviceId: string; mac: string; broker: string; password: string }): Promise<Bundle> {
  const store = new SqliteStore(data);
  try {
    const b = parseBundle(await addDevice(store, loadServiceKeys(data, crypto), crypto, { id: o.deviceId, mac: o.mac, kind: 'terminal', broker: o.broker }));
    await addVpn(store, { id: 'plant', protocol: 'tcp', port: 5020 });
    await addTestUser(store, 'alice', o.password);
    await grant(store, 'plant', 'alice');
    return b;
  } finally {
    await store.close();
  }
}

/**
 * A registered terminal, started, configured and joined as `user` (whose
 * password is `${user}-password`); stopped (without leaving) at teardown.
 */
export async function joinedAgent(
  t: { teardown(fn: () => unknown): void },
  cp: ControlPlane,
  id: string,
  user: string,
  o: AgentTestOptions = {},
): Promise<TerminalAgent> {
  const a = agent(await device(cp, id), cp.brokerUrl, o);
  t.teardown(() => a.stop({ leave: false }));
  await a.start();
  await a.configure();
  await a.join(user, `${user}-password`);
  return a;
}

/** Log lines (from CpOptions.lines) matching `re`. */
export function logged(lines: string[], re: RegExp): string[] {
  return lines.filter((l) => re.test(l));
}

/** A raw MQTT connection as device `b` (a fresh counter per call), as a hostile device would make one. */
let rawCounter = 1_000;
export function rawDevice(cp: ControlPlane, b: Bundle): Promise<MqttClient> {
  const password = Buffer.from(connectPassword(crypto, connectKey(crypto, b.secretKey, b.services.broker), b.id, ++rawCounter, 0));
  return mqtt.connectAsync(cp.brokerUrl, { clientId: b.id, username: 'kagi', password, reconnectPeriod: 0 });
}
