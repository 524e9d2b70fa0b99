/**
 * Admin operations on the store, shared by the CLI and tests. They write the
 * tables directly; the running services read them on every request, so a
 * change takes effect without a restart.
 */
import type { Crypto } from '../protocol/crypto/backend.js';
import { toHex } from '../protocol/bytes.js';
import { ID_PATTERN, MAC_PATTERN } from '../protocol/limits.js';
import { hashPassword } from './auth/password.js';
import { publicKeys, type Party, type ServiceKeys } from './identity.js';
import { isService } from './service-host.js';
import type { DeviceKind, Store, VpnProtocol } from './store/store.js';
import { ALL_MEMBERS } from '../protocol/vpn-frame.js';
import type { BrokerTls } from '../protocol/broker-tls.js';

export class AdminError extends Error {
  override readonly name = 'AdminError';
}

function checkId(id: string, what: string): void {
  if (!ID_PATTERN.test(id)) throw new AdminError(`${what} id '${id}' must match [A-Za-z0-9._:-]{1,64}`);
}

/** What `kagi device add` registers; a plaintext terminal has no key, the others bring their public key. */
export interface NewDevice {
  id: string;
  mac: string;
  kind: Exclude<DeviceKind, 'service' | 'admin'>;
  publicKey?: Uint8Array;
  relay?: string;
  port?: string;
  /** Register even if another device has this MAC (the rare real case: a MAC moved between boards). */
  allowDuplicateMac?: boolean;
}

function checkNewId(id: string, what: string): void {
  checkId(id, what);
  if (isService(id) || id === 'broker' || id === ALL_MEMBERS) throw new AdminError(`${what} id '${id}' is reserved for a service`);
}

/**
 * Register a device whose key pair was made where its file is written (the
 * CLI, local or remote): the control plane only ever sees the public key.
 */
export async function registerDevice(store: Store, d: NewDevice): Promise<void> {
  checkNewId(d.id, 'device');
  if (!MAC_PATTERN.test(d.mac)) throw new AdminError(`MAC '${d.mac}' must look like 02:00:00:00:00:01`);
  if (!['terminal', 'relay', 'plaintext', 'external'].includes(d.kind)) throw new AdminError('kind must be terminal, relay, plaintext or external');
  if (await store.getDevice(d.id)) throw new AdminError(`device '${d.id}' already exists (kagi device revoke ${d.id} retires it; choose another id)`);
  const same = d.allowDuplicateMac ? [] : await store.devicesWithMac(d.mac.toLowerCase());
  if (same.length) throw new AdminError(`MAC ${d.mac.toLowerCase()} is already registered to ${same.join(', ')}; check the label, or pass --allow-duplicate-mac if two devices really share it`);
  if (d.kind === 'plaintext') return addPlaintext(store, d);
  if (d.publicKey?.length !== 32) throw new AdminError('a device needs its 32-byte public key');
  await store.addDevice({ id: d.id, mac: d.mac.toLowerCase(), publicKey: d.publicKey, kind: d.kind });
}

/** The device file of a registered device (holding its private key). */
export function deviceBundle(
  d: NewDevice, secretKey: Uint8Array | undefined, services: Record<Party, string>,
  o: { broker: string; brokerTls?: BrokerTls | undefined; user?: string; password?: string },
): Record<string, unknown> {
  const mac = d.mac.toLowerCase();
  if (d.kind === 'plaintext') return { kagi: 1, id: d.id, mac, kind: 'plaintext', relay: d.relay, port: d.port };
  const bundle: Record<string, unknown> = { kagi: 1, id: d.id, mac, kind: d.kind, secretKey: toHex(secretKey!), services, broker: o.broker, ...(o.brokerTls ? { brokerTls: o.brokerTls } : {}) };
  if (o.user) Object.assign(bundle, { user: o.user, password: o.password });
  return bundle;
}

/** Make a key pair, register the device and return its file (tests, bench, demo: one process). */
export async function addDevice(
  store: Store, keys: ServiceKeys, c: Crypto,
  d: Omit<NewDevice, 'publicKey'> & { broker: string; brokerTls?: BrokerTls | undefined; user?: string; password?: string },
): Promise<Record<string, unknown>> {
  const kp = d.kind === 'plaintext' ? undefined : c.generateKeyPair();
  const nd: NewDevice = { id: d.id, mac: d.mac, kind: d.kind, ...(kp ? { publicKey: kp.publicKey } : {}), ...(d.relay ? { relay: d.relay } : {}), ...(d.port ? { port: d.port } : {}) };
  await registerDevice(store, nd);
  return deviceBundle(nd, kp?.secretKey, publicKeys(keys), d);
}

/** An operator's identity for the remote admin API; its key pair was made where its file is written. */
export async function registerAdmin(store: Store, id: string, publicKey: Uint8Array): Promise<void> {
  checkNewId(id, 'admin');
  if (publicKey.length !== 32) throw new AdminError('an admin needs its 32-byte public key');
  await store.addDevice({ id, mac: '', publicKey, kind: 'admin' });
}

/** kagi admin revoke: the admin's requests are refused from now on. */
export async function revokeAdmin(store: Store, id: string): Promise<void> {
  const d = await store.getDevice(id);
  if (d?.kind !== 'admin') throw new AdminError(`no admin '${id}'`);
  await store.revokeDevice(id);
}

/**
 * A plaintext terminal has no key: it is registered with its MAC and the
 * relay port it is bound to (DESIGN §7). Its file holds no secret.
 */
async function addPlaintext(store: Store, d: NewDevice): Promise<void> {
  if (!d.relay || !d.port) throw new AdminError('a plaintext terminal needs --relay ID and --port NAME');
  const relay = await store.getDevice(d.relay);
  if (!relay || relay.kind !== 'relay') throw new AdminError(`no relay '${d.relay}'`);
  await store.addDevice({ id: d.id, mac: d.mac.toLowerCase(), publicKey: new Uint8Array(0), kind: 'plaintext', relayId: d.relay, relayPort: d.port });
}

/** `kagi vpn revoke`: the user leaves the VPN now; the control plane rekeys it. */
export async function revoke(store: Store, vpnId: string, userId: string): Promise<void> {
  if (!(await store.revoke(vpnId, userId))) throw new AdminError(`user '${userId}' has no grant or membership in '${vpnId}'`);
}

/** kagi device revoke: never authenticates again; a running control plane disconnects it and rekeys its VPNs. */
export async function revokeDevice(store: Store, id: string): Promise<void> {
  if ((await store.getDevice(id))?.kind === 'admin') throw new AdminError(`'${id}' is an admin: kagi admin revoke ${id}`);
  if (!(await store.revokeDevice(id))) throw new AdminError(`no device '${id}'`);
}

export async function deleteVpn(store: Store, id: string): Promise<void> {
  if (!(await store.deleteVpn(id))) throw new AdminError(`no VPN '${id}'`);
}

/** `passwordHash`: hashPassword(password) made earlier (test set-ups reuse one); by default made here. */
export async function addUser(store: Store, id: string, password: string, passwordHash?: string): Promise<void> {
  checkId(id, 'user');
  if (password.length < 8) throw new AdminError('password must have at least 8 characters');
  if (await store.getUser(id)) throw new AdminError(`user '${id}' already exists`);
  await store.addUser({ id, passwordHash: passwordHash ?? (await hashPassword(password)) });
}

/** A new password for a user; the user's resumption tickets are dropped with the old one. */
export async function setUserPassword(store: Store, id: string, password: string): Promise<void> {
  if (password.length < 8) throw new AdminError('password must have at least 8 characters');
  if (!(await store.setPassword(id, await hashPassword(password)))) throw new AdminError(`no user '${id}'`);
}

export async function addVpn(store: Store, v: { id: string; protocol: VpnProtocol; port: number; priority?: number; maxBandwidth?: number; rekeyPeriodMs?: number }): Promise<void> {
  checkId(v.id, 'VPN');
  if (v.protocol !== 'tcp' && v.protocol !== 'udp') throw new AdminError(`protocol must be tcp or udp, not '${v.protocol}'`);
  if (!Number.isInteger(v.port) || v.port < 1 || v.port > 65535) throw new AdminError(`port must be 1..65535`);
  if (v.rekeyPeriodMs !== undefined && !(Number.isInteger(v.rekeyPeriodMs) && v.rekeyPeriodMs >= 0)) throw new AdminError('rekey period must be a duration of 0 or more');
  const existing = await store.getVpn(v.id);
  if (existing) throw new AdminError(`VPN '${v.id}' already exists (${existing.protocol}/${existing.port}): kagi vpn set ${v.id} changes it, kagi vpn delete ${v.id} removes it`);
  await store.addVpn({ id: v.id, protocol: v.protocol, port: v.port, priority: v.priority ?? 0, maxBandwidth: v.maxBandwidth ?? 0, flag: 0, totalRate: 0, rekeyPeriodMs: v.rekeyPeriodMs ?? 0 });
}

/** Change a VPN's priority, maximum bandwidth or rekey period; the running config server re-plans within a second. */
export async function setVpn(store: Store, id: string, patch: { priority?: number; maxBandwidth?: number; rekeyPeriodMs?: number }): Promise<void> {
  if (patch.priority !== undefined && !Number.isInteger(patch.priority)) throw new AdminError('priority must be an integer');
  if (patch.maxBandwidth !== undefined && !(Number.isInteger(patch.maxBandwidth) && patch.maxBandwidth >= 0)) throw new AdminError('max bandwidth must be 0 (no maximum) or more bits/s');
  if (patch.rekeyPeriodMs !== undefined && !(Number.isInteger(patch.rekeyPeriodMs) && patch.rekeyPeriodMs >= 0)) throw new AdminError('rekey period must be a duration of 0 or more');
  if (Object.values(patch).every((x) => x === undefined)) throw new AdminError('nothing to change: give --priority, --max-bandwidth or --rekey-period');
  if (!(await store.updateVpn(id, patch))) throw new AdminError(`no VPN '${id}'`);
}

/** Ask the running key server for a new epoch of a VPN (within about a second). */
export async function requestRekey(store: Store, vpnId: string): Promise<void> {
  if (!(await store.setRekeyRequest(vpnId, Date.now()))) throw new AdminError(`no VPN '${vpnId}'`);
}

export async function grant(store: Store, vpnId: string, userId: string): Promise<void> {
  if (!(await store.getVpn(vpnId))) throw new AdminError(`no VPN '${vpnId}'`);
  if (!(await store.getUser(userId))) throw new AdminError(`no user '${userId}'`);
  await store.grant(vpnId, userId);
}
