/**
 * Table rows → Store rows, the same for every engine. Integers go through
 * Number(): PostgreSQL returns BIGINT as a string (ms timestamps, rates),
 * SQLite returns numbers; binary columns arrive as Buffers from both.
 */
import type { AuditRow, DeviceRow, KeyHolderRow, MemberRow, NetworkInfoRow, OwedNotice, PlacedMember, SessionKeyRow, VpnRow } from './store.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are untyped driver output */
export const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length);

export function deviceRow(r: any): DeviceRow {
  return { id: r.id, mac: r.mac, publicKey: u8(r.public_key), kind: r.kind, revoked: Number(r.revoked) === 1, relayId: r.relay_id, relayPort: r.relay_port };
}

export function vpnRow(r: any): VpnRow {
  return {
    id: r.id, protocol: r.protocol, port: Number(r.port), priority: Number(r.priority), maxBandwidth: Number(r.max_bandwidth), flag: Number(r.flag),
    totalRate: Number(r.total_rate), rekeyPeriodMs: Number(r.rekey_period_ms), rekeyRequestedAt: Number(r.rekey_requested_at),
  };
}

export function memberRow(r: any): MemberRow {
  return { vpnId: r.vpn_id, deviceId: r.device_id, userId: r.user_id, keyId: Number(r.key_id), networkId: r.network_id };
}

export function sessionKeyRow(r: any): SessionKeyRow {
  return { vpnId: r.vpn_id, epoch: Number(r.epoch), key: u8(r.key), createdAt: Number(r.created_at) };
}

export function networkInfoRow(r: any): NetworkInfoRow {
  return { deviceId: r.device_id, address: r.address, relayId: r.relay_id, relayPort: r.relay_port, updatedAt: Number(r.updated_at) };
}

export function presenceMap(rows: any[]): Map<string, { online: boolean; changedAt: number }> {
  return new Map(rows.map((r) => [r.device_id as string, { online: Number(r.online) === 1, changedAt: Number(r.changed_at) }]));
}

export function auditRow(r: any): AuditRow {
  return { at: Number(r.at), actor: r.actor, op: r.op, detail: r.detail };
}

/** The one query behind Store.placedMembers, and its rows grouped by VPN (rows: [vpn, device, address, relay]). */
export const PLACED_MEMBERS_SQL = `SELECT m.vpn_id, m.device_id, n.address, n.relay_id FROM members m
  LEFT JOIN network_info n ON n.device_id = m.device_id ORDER BY m.vpn_id, m.device_id`;

/**
 * Store.keyHolders and Store.raiseKeyId as SQL both engines run, spelled
 * once like owedSql and historySql; `p(i)` writes the i-th placeholder.
 */
export function keyHolderSql(p: (i: number) => string) {
  const select = `SELECT m.device_id, m.key_id, n.relay_id, n.relay_port FROM members m
  LEFT JOIN network_info n ON n.device_id = m.device_id WHERE m.vpn_id = ${p(1)}`;
  return {
    /** Params: vpn. Rows: [device, key id, relay, port]. */
    holders: `${select} ORDER BY m.device_id`,
    /**
     * Params: vpn, epoch. The holders behind `epoch` that hold some epoch
     * (key id above 0: mid-join members get theirs from the join) and are
     * not marked as not communicating: what the key server's convergence
     * looks for every second, filtered here rather than read whole (10,000
     * rows a second, idle, at 10,000 members; after a power cut, every
     * silent device's liveness row a second besides).
     */
    lagging: `${select} AND m.key_id > 0 AND m.key_id < ${p(2)}
  AND NOT EXISTS (SELECT 1 FROM liveness l WHERE l.device_id = m.device_id AND l.communicating = 0) ORDER BY m.device_id`,
    /** Params: epoch, vpn, device, epoch (up, never down). */
    raise: `UPDATE members SET key_id = ${p(1)} WHERE vpn_id = ${p(2)} AND device_id = ${p(3)} AND key_id < ${p(4)}`,
  };
}

export function keyHolders(rows: unknown[][]): KeyHolderRow[] {
  return (rows as [string, number | string, string | null, string | null][]).map(([deviceId, keyId, relayId, relayPort]) => ({ deviceId, keyId: Number(keyId), relayId, relayPort }));
}

export function placedMembers(rows: unknown[][]): Map<string, PlacedMember[]> {
  const out = new Map<string, PlacedMember[]>();
  for (const [vpn, deviceId, address, via] of rows as [string, string, string | null, string | null][]) {
    let list = out.get(vpn);
    if (!list) out.set(vpn, (list = []));
    list.push({ deviceId, address, via });
  }
  return out;
}

/** Store field → column, for the columns `updateVpn` may change. */
export const VPN_COLUMNS = { priority: 'priority', maxBandwidth: 'max_bandwidth', rekeyPeriodMs: 'rekey_period_ms', flag: 'flag', totalRate: 'total_rate' } as const;

export function owedNoticeRow(r: Record<string, unknown>): OwedNotice {
  return { vpnId: String(r.vpn_id), memberId: String(r.member_id), holderId: String(r.holder_id), reason: String(r.reason) as OwedNotice['reason'], since: Number(r.since) };
}
