/**
 * Admin operations on the store, shared by the CLI and tests. They write the
 * tables directly; the running services read them on every request, so a
 * change takes effect without a restart.
 */
import type { Crypto } from '../protocol/crypto/backend.js';
import { toHex } from '../protocol/bytes.js';
import { ID_PATTERN } from '../protocol/limits.js';
import { MAC_PATTERN } from '../device/bundle.js';
import { hashPassword } from './auth/password.js';
import { publicKeys, type ServiceKeys } from './identity.js';
import { isService } from './service-host.js';
import type { DeviceKind, Store, VpnProtocol } from './store/store.js';

export class AdminError extends Error {
  override readonly name = 'AdminError';
}

function checkId(id: string, what: string): void {
  if (!ID_PATTERN.test(id)) throw new AdminError(`${what} id '${id}' must match [A-Za-z0-9._:-]{1,64}`);
}

/** Register a device; returns its bundle (holding its private key). */
export async function addDevice(
  store: Store, keys: ServiceKeys, c: Crypto,
  d: { id: string; mac: string; kind: Exclude<DeviceKind, 'service'>; broker: string; user?: string; password?: string; relay?: string; port?: string },
): Promise<Record<string, unknown>> {
  checkId(d.id, 'device');
  if (isService(d.id) || d.id === 'broker') throw new AdminError(`device id '${d.id}' is reserved for a service`);
  if (!MAC_PATTERN.test(d.mac)) throw new AdminError(`MAC '${d.mac}' must look like 02:00:00:00:00:01`);
  if (d.kind === 'plaintext') return addPlaintext(store, d);
  const kp = c.generateKeyPair();
  await store.addDevice({ id: d.id, mac: d.mac.toLowerCase(), publicKey: kp.publicKey, kind: d.kind });
  const bundle: Record<string, unknown> = { kagi: 1, id: d.id, mac: d.mac.toLowerCase(), kind: d.kind, secretKey: toHex(kp.secretKey), services: publicKeys(keys), broker: d.broker };
  if (d.user) Object.assign(bundle, { user: d.user, password: d.password });
  return bundle;
}

/**
 * A plaintext terminal has no key: it is registered with its MAC and the
 * relay port it is bound to (DESIGN §7). Its file holds no secret.
 */
async function addPlaintext(store: Store, d: { id: string; mac: string; relay?: string; port?: string }): Promise<Record<string, unknown>> {
  if (!d.relay || !d.port) throw new AdminError('a plaintext terminal needs --relay ID and --port NAME');
  const relay = await store.getDevice(d.relay);
  if (!relay || relay.kind !== 'relay') throw new AdminError(`no relay '${d.relay}'`);
  await store.addDevice({ id: d.id, mac: d.mac.toLowerCase(), publicKey: new Uint8Array(0), kind: 'plaintext', relayId: d.relay, relayPort: d.port });
  return { kagi: 1, id: d.id, mac: d.mac.toLowerCase(), kind: 'plaintext', relay: d.relay, port: d.port };
}

/** `kagi vpn revoke`: the user leaves the VPN now; the control plane rekeys it. */
export async function revoke(store: Store, vpnId: string, userId: string): Promise<void> {
  if (!(await store.revoke(vpnId, userId))) throw new AdminError(`user '${userId}' has no grant or membership in '${vpnId}'`);
}

/** kagi device revoke: never authenticates again; a running control plane disconnects it and rekeys its VPNs. */
export async function revokeDevice(store: Store, id: string): Promise<void> {
  if (!(await store.revokeDevice(id))) throw new AdminError(`no device '${id}'`);
}

export async function deleteVpn(store: Store, id: string): Promise<void> {
  if (!(await store.deleteVpn(id))) throw new AdminError(`no VPN '${id}'`);
}

export async function addUser(store: Store, id: string, password: string): Promise<void> {
  checkId(id, 'user');
  if (password.length < 8) throw new AdminError('password must have at least 8 characters');
  await store.addUser({ id, passwordHash: await hashPassword(password) });
}

export async function addVpn(store: Store, v: { id: string; protocol: VpnProtocol; port: number; priority?: number; maxBandwidth?: number; rekeyPeriodMs?: number }): Promise<void> {
  checkId(v.id, 'VPN');
  if (v.protocol !== 'tcp' && v.protocol !== 'udp') throw new AdminError(`protocol must be tcp or udp, not '${v.protocol}'`);
  if (!Number.isInteger(v.port) || v.port < 1 || v.port > 65535) throw new AdminError(`port must be 1..65535`);
  if (v.rekeyPeriodMs !== undefined && !(Number.isInteger(v.rekeyPeriodMs) && v.rekeyPeriodMs >= 0)) throw new AdminError('rekey period must be a duration of 0 or more');
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
