/** kagi status: devices, VPNs with their members and epochs. */
import { parse } from '../args.js';
import { TARGET_HELP, TARGET_OPTIONS, withTarget } from '../remote-admin.js';
import type { StatusView } from '../../servers/status-view.js';

export const statusHelp = `usage: kagi status [--json] [--data DIR | --store postgres://… | --remote FILE]

Shows devices (kind, MAC, last address, online or offline and since
when, whether they answer polls, whether they hold a live resumption ticket
and when they last re-joined with one), relay ports (state and the plaintext
terminal bound to each) and the VPN management table (patent Fig. 6): per
VPN its protocol/port, priority, maximum bandwidth, the rate the bandwidth
plan gives it (or CUT), user count, current key epoch and when it was
keyed; per member its user, key id and network id; and the admins.

${TARGET_HELP}`;

export async function status(args: string[]): Promise<number> {
  const { values: v } = parse(args, { ...TARGET_OPTIONS, json: { type: 'boolean', default: false } }, 0);
  const { devices, ports, vpns, admins } = (await withTarget(v, (t) => t.run('status'))) as StatusView;
  if (v.json) {
    console.log(JSON.stringify({ devices, vpns, ports, admins }, null, 2));
    return 0;
  }
  console.log(`devices (${devices.length})`);
  for (const d of devices) {
    const state = d.revoked ? 'REVOKED' : d.online === null ? 'never seen' : `${d.online ? 'online' : 'offline'} since ${ago(d.since!)}`;
    console.log(`  ${d.id.padEnd(20)} ${d.kind.padEnd(9)} ${d.mac}  ${(d.address ?? '-').padEnd(15)} ${state}${d.communicating ? '' : ', not answering polls'}${ticketText(d.ticket)}`);
  }
  console.log(`relay ports (${ports.length})`);
  for (const p of ports) console.log(`  ${`${p.relay}/${p.port}`.padEnd(20)} ${p.state.padEnd(10)} ${p.terminal}  ${p.vpns.join(', ') || '-'}`);
  console.log(`VPNs (${vpns.length})`);
  for (const x of vpns) {
    const plan = x.cut ? 'CUT' : x.members.length === 0 ? 'idle' : x.rate ? `${bits(x.rate)} planned` : 'unlimited';
    console.log(`  ${x.id.padEnd(20)} ${x.protocol}/${x.port}  priority ${x.priority}  max ${x.maxBandwidth ? bits(x.maxBandwidth) : '-'}  ${plan}  ${x.users} user(s)  epoch ${x.epoch ?? '-'}${x.lastRekey ? ` (keyed ${ago(x.lastRekey)})` : ''}`);
    for (const m of x.members) console.log(`    ${m.device} (${m.user}, key ${m.keyId}, network ${m.networkId})`);
  }
  if (admins.length) console.log(`admins (${admins.length}): ${admins.map((a) => `${a.id}${a.revoked ? ' (revoked)' : ''}`).join(', ')}`);
  return 0;
}

function ticketText(t: StatusView['devices'][number]['ticket']): string {
  if (!t) return '';
  return `, ticket ${t.live ? 'live' : 'none live'}${t.lastUsed ? ` (last used ${ago(t.lastUsed)})` : ''}`;
}

function ago(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : s < 86400 ? `${Math.round(s / 3600)}h ago` : `${Math.round(s / 86400)}d ago`;
}

function bits(n: number): string {
  return n >= 1e9 ? `${+(n / 1e9).toFixed(2)} gbit/s` : n >= 1e6 ? `${+(n / 1e6).toFixed(2)} mbit/s` : n >= 1e3 ? `${+(n / 1e3).toFixed(2)} kbit/s` : `${n} bit/s`;
}
