/**
 * Every admin operation by name, with its arguments as a CBOR-able map:
 * one entry point for the CLI on a data dir (actor local:USER@HOST) and for
 * the remote admin API the config server answers (actor admin:ID), so both
 * check the same things, change the same rows and write the same audit
 * rows. Arguments are untrusted input here (they may come off the broker):
 * each is read with a type check, and a wrong one is an AdminError naming
 * the field.
 */
import { isKagiError } from '../protocol/errors.js';
import { asBody, bytes, num, str, type Body } from '../protocol/body.js';
import { toHex } from '../protocol/bytes.js';
import type { Party } from './identity.js';
import type { Store } from './store/store.js';
import { statusView } from './status-view.js';
import { explainDevice, type WhySettings } from './why/explain.js';
import {
  AdminError, addUser, setUserPassword, addVpn, deleteVpn, grant, registerAdmin, registerDevice, requestRekey, revoke, revokeAdmin, revokeDevice, setVpn, type NewDevice,
} from './admin.js';

export interface AdminContext {
  store: Store;
  /** The services' public keys (hex), which the files of new devices carry (read when an op needs them). */
  services(): Promise<Record<Party, string>>;
  /** Who asks, as the audit table names them. */
  actor: string;
  /** What the control plane runs with, for kagi why (the config server knows; a data dir does not). */
  why?: WhySettings;
}

interface Op {
  /** A change is recorded in the audit table; a read is not. */
  change: boolean;
  run(c: AdminContext, a: Body): Promise<unknown>;
  /** The audit row's detail: the arguments that are not secret. */
  detail?(a: Body): Record<string, unknown>;
}

/** An optional argument: absent or null is undefined, anything else must pass `read`. */
function opt<T>(a: Body, k: string, read: (b: Body, k: string) => T): T | undefined {
  return a[k] === undefined || a[k] === null ? undefined : read(a, k);
}

const id = (a: Body, k = 'id') => str(a, k, 64);

function newDevice(a: Body): NewDevice {
  const publicKey = opt(a, 'publicKey', (b, k) => bytes(b, k, 32));
  const relay = opt(a, 'relay', (b, k) => str(b, k, 64));
  const port = opt(a, 'port', (b, k) => str(b, k, 64));
  const allowDuplicateMac = a.allowDuplicateMac === true;
  return { id: id(a), mac: str(a, 'mac', 32), kind: str(a, 'kind', 16) as NewDevice['kind'], ...(publicKey ? { publicKey } : {}), ...(relay ? { relay } : {}), ...(port ? { port } : {}), ...(allowDuplicateMac ? { allowDuplicateMac } : {}) };
}

/** Only the named keys that are present: what an audit row records. */
function pick(a: Body, ...keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => a[k] !== undefined && a[k] !== null).map((k) => [k, a[k]]));
}

const vpnPatch = (a: Body) => ({
  ...pick(a, 'priority', 'maxBandwidth', 'rekeyPeriodMs'),
}) as { priority?: number; maxBandwidth?: number; rekeyPeriodMs?: number };

function checkPatch(a: Body): void {
  for (const k of ['priority', 'maxBandwidth', 'rekeyPeriodMs']) opt(a, k, num);
}

const OPS: Record<string, Op> = {
  'device.add': {
    change: true,
    // user: the preset user written into an app server's file (recorded, never its password).
    run: async (c, a) => (opt(a, 'user', id), await registerDevice(c.store, newDevice(a)), { services: await c.services() }),
    detail: (a) => pick(a, 'id', 'mac', 'kind', 'user', 'relay', 'port', 'allowDuplicateMac'),
  },
  'device.provision': {
    change: true,
    run: async (c, a) => (opt(a, 'profile', (b, k) => str(b, k, 64)), await registerDevice(c.store, newDevice(a)), { services: await c.services() }),
    detail: (a) => pick(a, 'id', 'mac', 'kind', 'profile', 'allowDuplicateMac'),
  },
  'device.get': {
    change: false,
    run: async (c, a) => {
      const d = await c.store.getDevice(id(a));
      return d && d.kind !== 'admin' ? { id: d.id, mac: d.mac, kind: d.kind, publicKey: d.publicKey, revoked: d.revoked } : null;
    },
  },
  'device.revoke': { change: true, run: (c, a) => revokeDevice(c.store, id(a)) },
  'user.add': {
    change: true,
    run: (c, a) => addUser(c.store, id(a), str(a, 'password', 1024)),
    detail: (a) => pick(a, 'id'),
  },
  'user.passwd': {
    change: true,
    run: (c, a) => setUserPassword(c.store, id(a), str(a, 'password', 1024)),
    detail: (a) => pick(a, 'id'),
  },
  'vpn.add': {
    change: true,
    run: (c, a) => {
      checkPatch(a);
      return addVpn(c.store, { id: id(a), protocol: str(a, 'protocol', 8) as 'tcp', port: num(a, 'port'), ...vpnPatch(a) });
    },
  },
  'vpn.set': {
    change: true,
    run: (c, a) => {
      checkPatch(a);
      return setVpn(c.store, id(a), vpnPatch(a));
    },
  },
  'vpn.grant': { change: true, run: (c, a) => grant(c.store, id(a, 'vpn'), id(a, 'user')) },
  'vpn.revoke': { change: true, run: (c, a) => revoke(c.store, id(a, 'vpn'), id(a, 'user')) },
  'vpn.rekey': { change: true, run: (c, a) => requestRekey(c.store, id(a)) },
  'vpn.delete': { change: true, run: (c, a) => deleteVpn(c.store, id(a)) },
  'admin.add': {
    change: true,
    run: async (c, a) => (await registerAdmin(c.store, id(a), bytes(a, 'publicKey', 32)), { services: await c.services() }),
    detail: (a) => pick(a, 'id'),
  },
  'admin.revoke': { change: true, run: (c, a) => revokeAdmin(c.store, id(a)) },
  'admin.list': {
    change: false,
    run: async (c) => (await c.store.listDevices()).filter((d) => d.kind === 'admin').map((d) => ({ id: d.id, revoked: d.revoked })),
  },
  'status': { change: false, run: (c) => statusView(c.store) },
  'why': {
    change: false,
    // The control plane's own settings win; a data dir takes the operator's word (--evict-after).
    run: (c, a) => explainDevice(c.store, id(a, 'device'), opt(a, 'vpn', id), c.why ?? { evictAfter: opt(a, 'evictAfter', num) ?? 3 }),
  },
  'audit': {
    change: false,
    run: async (c, a) => {
      const limit = opt(a, 'limit', num) ?? 50;
      if (limit < 1 || limit > 10_000) throw new AdminError('limit must be 1..10000');
      return c.store.auditLog(limit);
    },
  },
};

/** The names of the admin operations. */
export const ADMIN_OPS: readonly string[] = Object.keys(OPS);

/**
 * Run one admin operation; a change that succeeds is recorded in the audit
 * table (who, what, when; never a password or key). Throws AdminError for
 * anything the operator should fix (and ConflictError for a row that
 * exists).
 */
export async function runAdminOp(c: AdminContext, op: string, args: unknown): Promise<unknown> {
  const def = Object.hasOwn(OPS, op) ? OPS[op]! : undefined;
  if (!def) throw new AdminError(`unknown admin operation '${op}'`);
  let a: Body;
  let out: unknown;
  try {
    a = asBody(args ?? {});
    out = await def.run(c, a);
  } catch (e) {
    if (isKagiError(e, 'field')) throw new AdminError(`${op}: ${e.message}`);
    throw e;
  }
  if (def.change) {
    const detail = def.detail ? def.detail(a) : a;
    await c.store.audit({ at: Date.now(), actor: c.actor, op, detail: JSON.stringify(detail, (_k, v: unknown) => (v instanceof Uint8Array ? toHex(v) : v)) });
  }
  return out ?? null;
}

/** Admin operations bound to one place: the tables here, or a control plane over the broker (cli/remote-admin.ts). */
export interface AdminRunner {
  /** Run one admin operation; AdminError carries what the operator must fix. */
  run(op: string, args?: Record<string, unknown>): Promise<unknown>;
  /** The services' public keys (hex), for the files of new devices. */
  services(): Promise<Record<Party, string>>;
}

/** Admin operations on a store, as `actor`. */
export function storeRunner(store: Store, actor: string, services: () => Promise<Record<Party, string>>): AdminRunner {
  return { run: (op, args = {}) => runAdminOp({ store, actor, services }, op, args), services };
}
