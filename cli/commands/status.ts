/** kagi status: devices, VPNs with their members and epochs. */
import { DATA_OPTION, parse } from '../args.js';
import { openStore } from '../../servers/store/open.js';

export const statusHelp = `usage: kagi status [--json] [--data DIR] [--store postgres://…]

Shows devices (kind, MAC, last address, online or offline and since
when, whether they answer polls), relay ports (state and the plaintext
terminal bound to each) and the VPN management table (patent Fig. 6): per
VPN its protocol/port, priority, maximum bandwidth, the rate the bandwidth
plan gives it (or CUT), user count, current key epoch and when it was
keyed; per member its user, key id and network id.`;

export async function status(args: string[]): Promise<number> {
  const { values: v } = parse(args, { ...DATA_OPTION, json: { type: 'boolean', default: false } }, 0);
  const s = await openStore(v.data, v.store);
  try {
    const devices = [];
    const presence = await s.presence();
    const silent = await s.notCommunicating();
    for (const d of await s.listDevices()) {
      const p = presence.get(d.id);
      devices.push({
        id: d.id, kind: d.kind, mac: d.mac, revoked: d.revoked, address: (await s.getNetworkInfo(d.id))?.address ?? null,
        // null: never seen (plaintext terminals have no MQTT state of their own)
        online: p ? p.online : null,
        since: p ? new Date(p.changedAt).toISOString() : null,
        communicating: !silent.has(d.id),
      });
    }
    // Relay ports from the tables: a port forwards while its terminal holds
    // a membership with a key; otherwise it is restricted.
    const ports = [];
    for (const d of (await s.listDevices()).filter((x) => x.kind === 'plaintext')) {
      const memberships = await s.membershipsOf(d.id);
      const forwarding = memberships.some((m) => m.keyId > 0);
      ports.push({ relay: d.relayId, port: d.relayPort, terminal: d.id, state: forwarding ? 'FORWARDING' : 'RESTRICTED', vpns: memberships.map((m) => m.vpnId) });
    }
    const vpns = [];
    for (const x of await s.listVpns()) {
      const key = await s.currentSessionKey(x.id);
      const members = (await s.members(x.id)).map((m) => ({ device: m.deviceId, user: m.userId, keyId: m.keyId, networkId: m.networkId }));
      const users = new Set(members.map((m) => m.user)).size;
      vpns.push({ id: x.id, protocol: x.protocol, port: x.port, priority: x.priority, maxBandwidth: x.maxBandwidth, rate: x.totalRate, cut: x.flag === 1, users, epoch: key?.epoch ?? null, lastRekey: key ? new Date(key.createdAt).toISOString() : null, members });
    }
    if (v.json) {
      console.log(JSON.stringify({ devices, vpns, ports }, null, 2));
      return 0;
    }
    console.log(`devices (${devices.length})`);
    for (const d of devices) {
      const state = d.revoked ? 'REVOKED' : d.online === null ? 'never seen' : `${d.online ? 'online' : 'offline'} since ${ago(d.since!)}`;
      console.log(`  ${d.id.padEnd(20)} ${d.kind.padEnd(9)} ${d.mac}  ${(d.address ?? '-').padEnd(15)} ${state}${d.communicating ? '' : ', not answering polls'}`);
    }
    console.log(`relay ports (${ports.length})`);
    for (const p of ports) console.log(`  ${`${p.relay}/${p.port}`.padEnd(20)} ${p.state.padEnd(10)} ${p.terminal}  ${p.vpns.join(', ') || '-'}`);
    console.log(`VPNs (${vpns.length})`);
    for (const x of vpns) {
      const plan = x.cut ? 'CUT' : x.members.length === 0 ? 'idle' : x.rate ? `${bits(x.rate)} planned` : 'unlimited';
      console.log(`  ${x.id.padEnd(20)} ${x.protocol}/${x.port}  priority ${x.priority}  max ${x.maxBandwidth ? bits(x.maxBandwidth) : '-'}  ${plan}  ${x.users} user(s)  epoch ${x.epoch ?? '-'}${x.lastRekey ? ` (keyed ${ago(x.lastRekey)})` : ''}`);
      for (const m of x.members) console.log(`    ${m.device} (${m.user}, key ${m.keyId}, network ${m.networkId})`);
    }
    return 0;
  } finally {
    await s.close();
  }
}

function ago(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : s < 86400 ? `${Math.round(s / 3600)}h ago` : `${Math.round(s / 86400)}d ago`;
}

function bits(n: number): string {
  return n >= 1e9 ? `${+(n / 1e9).toFixed(2)} gbit/s` : n >= 1e6 ? `${+(n / 1e6).toFixed(2)} mbit/s` : n >= 1e3 ? `${+(n / 1e3).toFixed(2)} kbit/s` : `${n} bit/s`;
}
