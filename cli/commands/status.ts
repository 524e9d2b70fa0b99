/** kagi status: devices, VPNs with their members and epochs. */
import { DATA_OPTION, parse } from '../args.js';
import { openStore } from '../../servers/store/open.js';

export const statusHelp = `usage: kagi status [--json] [--data DIR] [--store postgres://…]

Shows devices (kind, MAC, last address), relay ports (state and the
plaintext terminal bound to each) and the VPN management table (patent
Fig. 6): per VPN its protocol/port, priority, maximum bandwidth, the rate
the bandwidth plan gives it (or CUT), user count and current key epoch;
per member its user, key id and network id.`;

export async function status(args: string[]): Promise<number> {
  const { values: v } = parse(args, { ...DATA_OPTION, json: { type: 'boolean', default: false } }, 0);
  const s = await openStore(v.data, v.store);
  try {
    const devices = [];
    for (const d of await s.listDevices()) {
      devices.push({ id: d.id, kind: d.kind, mac: d.mac, revoked: d.revoked, address: (await s.getNetworkInfo(d.id))?.address ?? null });
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
      vpns.push({ id: x.id, protocol: x.protocol, port: x.port, priority: x.priority, maxBandwidth: x.maxBandwidth, rate: x.totalRate, cut: x.flag === 1, users, epoch: key?.epoch ?? null, members });
    }
    if (v.json) {
      console.log(JSON.stringify({ devices, vpns, ports }, null, 2));
      return 0;
    }
    console.log(`devices (${devices.length})`);
    for (const d of devices) console.log(`  ${d.id.padEnd(20)} ${d.kind.padEnd(9)} ${d.mac}  ${d.revoked ? 'REVOKED' : d.address ?? '-'}`);
    console.log(`relay ports (${ports.length})`);
    for (const p of ports) console.log(`  ${`${p.relay}/${p.port}`.padEnd(20)} ${p.state.padEnd(10)} ${p.terminal}  ${p.vpns.join(', ') || '-'}`);
    console.log(`VPNs (${vpns.length})`);
    for (const x of vpns) {
      const plan = x.cut ? 'CUT' : x.members.length === 0 ? 'idle' : x.rate ? `${bits(x.rate)} planned` : 'unlimited';
      console.log(`  ${x.id.padEnd(20)} ${x.protocol}/${x.port}  priority ${x.priority}  max ${x.maxBandwidth ? bits(x.maxBandwidth) : '-'}  ${plan}  ${x.users} user(s)  epoch ${x.epoch ?? '-'}`);
      for (const m of x.members) console.log(`    ${m.device} (${m.user}, key ${m.keyId}, network ${m.networkId})`);
    }
    return 0;
  } finally {
    await s.close();
  }
}

function bits(n: number): string {
  return n >= 1e9 ? `${+(n / 1e9).toFixed(2)} gbit/s` : n >= 1e6 ? `${+(n / 1e6).toFixed(2)} mbit/s` : n >= 1e3 ? `${+(n / 1e3).toFixed(2)} kbit/s` : `${n} bit/s`;
}
