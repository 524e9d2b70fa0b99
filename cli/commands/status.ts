/** kagi status: devices, VPNs with their members and epochs. */
import { DATA_OPTION, parse } from '../args.js';
import { SqliteStore } from '../../servers/store/sqlite.js';

export const statusHelp = `usage: kagi status [--json] [--data DIR]

Shows devices (kind, MAC, last address), relay ports (state and the
plaintext terminal bound to each) and VPNs (protocol/port, current key
epoch, members with their user and key id).`;

export async function status(args: string[]): Promise<number> {
  const { values: v } = parse(args, { ...DATA_OPTION, json: { type: 'boolean', default: false } }, 0);
  const s = new SqliteStore(v.data);
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
      const members = (await s.members(x.id)).map((m) => ({ device: m.deviceId, user: m.userId, keyId: m.keyId }));
      vpns.push({ id: x.id, protocol: x.protocol, port: x.port, priority: x.priority, maxBandwidth: x.maxBandwidth, epoch: key?.epoch ?? null, members });
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
      console.log(`  ${x.id.padEnd(20)} ${x.protocol}/${x.port}  epoch ${x.epoch ?? '-'}  ${x.members.length} member(s)`);
      for (const m of x.members) console.log(`    ${m.device} (${m.user}, key ${m.keyId})`);
    }
    return 0;
  } finally {
    await s.close();
  }
}
