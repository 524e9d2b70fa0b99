/**
 * What `kagi status` shows, read from the tables in one place so the local
 * CLI and the remote admin API (op `status`) print the same thing. Plain
 * data (strings, numbers, booleans, null), so it goes over CBOR as is.
 */
import type { Store } from './store/store.js';

export interface StatusView {
  devices: { id: string; kind: string; mac: string; revoked: boolean; address: string | null; online: boolean | null; since: string | null; communicating: boolean;
    /** A live resumption ticket (null: never had one), and when the device last re-joined with one. */
    ticket: { live: boolean; lastUsed: string | null } | null }[];
  ports: { relay: string | null; port: string | null; terminal: string; state: 'FORWARDING' | 'RESTRICTED'; vpns: string[] }[];
  vpns: {
    id: string; protocol: string; port: number; priority: number; maxBandwidth: number; rate: number; cut: boolean; users: number;
    epoch: number | null; lastRekey: string | null; members: { device: string; user: string; keyId: number; networkId: string }[];
  }[];
  admins: { id: string; revoked: boolean }[];
}

export async function statusView(s: Store): Promise<StatusView> {
  const all = await s.listDevices();
  const presence = await s.presence();
  const silent = await s.notCommunicating();
  const info = await s.allNetworkInfo();
  const tickets = await s.ticketSummary(Date.now());
  const devices = all.filter((d) => d.kind !== 'admin').map((d) => {
    const p = presence.get(d.id);
    return {
      id: d.id, kind: d.kind, mac: d.mac, revoked: d.revoked, address: info.get(d.id)?.address ?? null,
      // null: never seen (plaintext terminals have no MQTT state of their own)
      online: p ? p.online : null,
      since: p ? new Date(p.changedAt).toISOString() : null,
      communicating: !silent.has(d.id),
      ticket: ticketOf(tickets.get(d.id)),
    };
  });
  // Relay ports from the tables: a port forwards while its terminal holds
  // a membership with a key; otherwise it is restricted.
  const ports: StatusView['ports'] = [];
  for (const d of all.filter((x) => x.kind === 'plaintext')) {
    const memberships = await s.membershipsOf(d.id);
    const forwarding = memberships.some((m) => m.keyId > 0);
    ports.push({ relay: d.relayId, port: d.relayPort, terminal: d.id, state: forwarding ? 'FORWARDING' : 'RESTRICTED', vpns: memberships.map((m) => m.vpnId) });
  }
  const vpns: StatusView['vpns'] = [];
  for (const x of await s.listVpns()) {
    const key = await s.currentSessionKey(x.id);
    const members = (await s.members(x.id)).map((m) => ({ device: m.deviceId, user: m.userId, keyId: m.keyId, networkId: m.networkId }));
    const users = new Set(members.map((m) => m.user)).size;
    vpns.push({ id: x.id, protocol: x.protocol, port: x.port, priority: x.priority, maxBandwidth: x.maxBandwidth, rate: x.totalRate, cut: x.flag === 1, users, epoch: key?.epoch ?? null, lastRekey: key ? new Date(key.createdAt).toISOString() : null, members });
  }
  const admins = all.filter((d) => d.kind === 'admin').map((d) => ({ id: d.id, revoked: d.revoked }));
  return { devices, ports, vpns, admins };
}

function ticketOf(t: { live: boolean; lastUsedAt: number | null } | undefined): StatusView['devices'][number]['ticket'] {
  return t ? { live: t.live, lastUsed: t.lastUsedAt === null ? null : new Date(t.lastUsedAt).toISOString() } : null;
}
