/** Admin commands on a local data dir: device, user, vpn. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { localActor } from './audit.js';
import { deviceCard, qrPng, qrTerminal } from '../device-card.js';
import { DATA_OPTION, UsageError, bitrate, duration, int, parse, readStdinLine } from '../args.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { openStore } from '../../servers/store/open.js';
import { loadServiceKeys } from '../../servers/identity.js';
import { addDevice, addUser, addVpn, deleteVpn, grant, requestRekey, revoke, revokeDevice, setVpn } from '../../servers/admin.js';
import type { Store, VpnProtocol } from '../../servers/store/store.js';

/**
 * Run an admin change on the store; when it succeeds and `audit` says what
 * it was (never a secret), record it in the audit table.
 */
async function withStore<T>(v: { data: string; store?: string | undefined }, fn: (s: Store) => Promise<T>, audit?: { op: string; detail: Record<string, unknown> }): Promise<T> {
  const s = await openStore(v.data, v.store);
  try {
    const out = await fn(s);
    if (audit) await s.audit({ at: Date.now(), actor: localActor(), op: audit.op, detail: JSON.stringify(audit.detail) });
    return out;
  } finally {
    await s.close();
  }
}

export const deviceHelp = `usage: kagi device add ID --mac MAC --out FILE [options]
       kagi device revoke ID
       kagi device card FILE [--png OUT]

add     registers a device and writes its bundle (identity, private key,
        service keys) to FILE with mode 0600.
card    shows the device id and its public-key fingerprint, as text and as
        a QR code (--png OUT also writes it as an image), for an installer
        to check on site against kagi provision's output
revoke  revokes a device for good: it leaves every VPN, can never
        authenticate again, and a running control plane disconnects it
        from the broker and rekeys its VPNs within about a second.

options:
  --mac MAC          the device's MAC, e.g. 02:00:00:00:00:01 (required)
  --kind KIND        terminal (default), relay, plaintext or external
  --out FILE         where to write the bundle (required; refused if it exists)
  --force            overwrite FILE
  --broker URL       broker URL written into the bundle (default mqtt://127.0.0.1:1883)
  --user ID          preset user for an app server that joins by itself;
                     its password is read from standard input
  --relay ID         (plaintext) the relay the terminal sits behind
  --port NAME        (plaintext) the relay port it is bound to, e.g. p1
  --data DIR         control plane data dir (default ./kagi-data)
  --store URL        the tables in PostgreSQL (postgres://…)

A plaintext terminal holds no key: its file has only its id, MAC and relay
binding, and its keys go to the relay.`;

export async function device(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'card') {
    const { values: v, positionals } = parse(rest, { png: { type: 'string' } }, 1);
    let file: Record<string, unknown>;
    try {
      file = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new UsageError(`${positionals[0]}: ${(e as Error).message}`);
    }
    const card = deviceCard(nodeCrypto(), file);
    console.log(`device ${card.id}\nfingerprint ${card.fingerprint}\n${await qrTerminal(card.text)}`);
    if (v.png) {
      await qrPng(card.text, v.png);
      console.log(`QR code written to ${v.png}`);
    }
    return 0;
  }
  if (sub === 'revoke') {
    const { values: v, positionals } = parse(rest, { ...DATA_OPTION }, 1);
    await withStore(v, (s) => revokeDevice(s, positionals[0]!), { op: 'device.revoke', detail: { id: positionals[0] } });
    console.log(`device ${positionals[0]} revoked: it can never authenticate again; a running control plane disconnects it and rekeys its VPNs`);
    return 0;
  }
  if (sub !== 'add') throw new UsageError(`unknown 'device ${sub ?? ''}': try 'kagi device --help'`);
  const { values: v, positionals } = parse(rest, { ...DATA_OPTION, mac: { type: 'string' }, kind: { type: 'string', default: 'terminal' }, out: { type: 'string' }, force: { type: 'boolean', default: false }, broker: { type: 'string', default: 'mqtt://127.0.0.1:1883' }, user: { type: 'string' }, relay: { type: 'string' }, port: { type: 'string' } }, 1);
  if (!v.mac) throw new UsageError('--mac is required');
  if (!v.out) throw new UsageError('--out is required');
  if (!['terminal', 'relay', 'plaintext', 'external'].includes(v.kind)) throw new UsageError(`--kind must be terminal, relay, plaintext or external`);
  if (existsSync(v.out) && !v.force) throw new UsageError(`${v.out} exists (it may hold another device's key); use --force to overwrite`);
  const password = v.user ? await readStdinLine(`password for ${v.user}`) : undefined;
  const c = nodeCrypto();
  const bundle = await withStore(v, (s) =>
    addDevice(s, loadServiceKeys(v.data, c), c, {
      id: positionals[0]!, mac: v.mac!, kind: v.kind as 'terminal', broker: v.broker,
      ...(v.user ? { user: v.user, password } : {}), ...(v.relay ? { relay: v.relay } : {}), ...(v.port ? { port: v.port } : {}),
    }),
    { op: 'device.add', detail: { id: positionals[0], mac: v.mac, kind: v.kind, ...(v.user ? { user: v.user } : {}), ...(v.relay ? { relay: v.relay, port: v.port } : {}) } },
  );
  writeFileSync(v.out, JSON.stringify(bundle, null, 2) + '\n', { mode: 0o600 });
  console.log(`device ${positionals[0]} added (${v.kind}, ${v.mac}); bundle written to ${v.out}`);
  return 0;
}

export const userHelp = `usage: kagi user add ID --password-stdin [--data DIR]

Adds a user; the password (at least 8 characters) is read from standard
input and stored as an scrypt hash.`;

export async function user(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'add') throw new UsageError(`unknown 'user ${sub ?? ''}': try 'kagi user add --help'`);
  const { values: v, positionals } = parse(rest, { ...DATA_OPTION, 'password-stdin': { type: 'boolean', default: false } }, 1);
  if (!v['password-stdin']) throw new UsageError('--password-stdin is required (passwords never go on the command line)');
  const password = await readStdinLine(`password for ${positionals[0]}`);
  await withStore(v, (s) => addUser(s, positionals[0]!, password), { op: 'user.add', detail: { id: positionals[0] } });
  console.log(`user ${positionals[0]} added`);
  return 0;
}

export const vpnHelp = `usage: kagi vpn add ID --protocol tcp|udp --port N [--priority P] [--max-bandwidth RATE] [--rekey-period DURATION]
       kagi vpn set ID [--priority P] [--max-bandwidth RATE] [--rekey-period DURATION]
       kagi vpn grant VPN USER
       kagi vpn delete ID
       kagi vpn revoke VPN USER
       kagi vpn rekey ID

add     creates a VPN carrying one service (protocol/port)
set     changes a VPN's priority, maximum bandwidth or rekey period; a
        running control plane re-plans the link within a second
grant   lets USER join VPN; takes effect on a running control plane at once
delete  removes the VPN, its grants, memberships and keys; a running control
        plane tells its members within about a second and relays restrict
        the ports that carried it (S405)
revoke  USER leaves VPN now: a running control plane tells its devices,
        closes the network devices to them and rekeys the VPN for the rest
rekey   a new epoch of the VPN's key for its communicating members, within
        about a second on a running control plane

--priority P (default 0; larger is more important) and --max-bandwidth RATE
(e.g. 500kbit, 24mbit; default 0 = no maximum) feed the bandwidth plan:
when the link (kagi up --link-capacity) is smaller than the VPNs want,
higher priorities get their maximum first, equal priorities share what is
left, and lower priorities are cut (their members are told, their frames
are not forwarded) until the plan restores them.

--rekey-period (e.g. 30m, 1h; default: the control plane's, kagi up
--rekey-period) is how often the VPN is rekeyed; members that do not answer
polls are left out and catch up when they answer again.

options: --data DIR (default ./kagi-data)`;

export async function vpn(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'add') {
    const { values: v, positionals } = parse(rest, { ...DATA_OPTION, protocol: { type: 'string' }, port: { type: 'string' }, priority: { type: 'string' }, 'max-bandwidth': { type: 'string' }, 'rekey-period': { type: 'string' } }, 1);
    if (!v.protocol) throw new UsageError('--protocol is required (tcp or udp)');
    const rekeyPeriodMs = duration(v['rekey-period'], 'rekey-period', 0);
    await withStore(v, (s) =>
      addVpn(s, { id: positionals[0]!, protocol: v.protocol as VpnProtocol, port: int(v.port, 'port'), priority: int(v.priority, 'priority', 0), maxBandwidth: bitrate(v['max-bandwidth'], 'max-bandwidth', 0), rekeyPeriodMs }),
      { op: 'vpn.add', detail: { id: positionals[0], protocol: v.protocol, port: v.port, priority: v.priority ?? '0', maxBandwidth: v['max-bandwidth'] ?? '0', rekeyPeriod: v['rekey-period'] ?? null } },
    );
    console.log(`VPN ${positionals[0]} added (${v.protocol}/${v.port})`);
    return 0;
  }
  if (sub === 'grant') {
    const { values: v, positionals } = parse(rest, { ...DATA_OPTION }, 2);
    await withStore(v, (s) => grant(s, positionals[0]!, positionals[1]!), { op: 'vpn.grant', detail: { vpn: positionals[0], user: positionals[1] } });
    console.log(`user ${positionals[1]} may join ${positionals[0]}`);
    return 0;
  }
  if (sub === 'revoke') {
    const { values: v, positionals } = parse(rest, { ...DATA_OPTION }, 2);
    await withStore(v, (s) => revoke(s, positionals[0]!, positionals[1]!), { op: 'vpn.revoke', detail: { vpn: positionals[0], user: positionals[1] } });
    console.log(`user ${positionals[1]} revoked from ${positionals[0]}`);
    return 0;
  }
  if (sub === 'set') {
    const { values: v, positionals } = parse(rest, { ...DATA_OPTION, priority: { type: 'string' }, 'max-bandwidth': { type: 'string' }, 'rekey-period': { type: 'string' } }, 1);
    const patch = {
      ...(v.priority !== undefined ? { priority: int(v.priority, 'priority') } : {}),
      ...(v['max-bandwidth'] !== undefined ? { maxBandwidth: bitrate(v['max-bandwidth'], 'max-bandwidth') } : {}),
      ...(v['rekey-period'] !== undefined ? { rekeyPeriodMs: duration(v['rekey-period'], 'rekey-period') } : {}),
    };
    if (Object.keys(patch).length === 0) throw new UsageError('vpn set: nothing to change (give --priority, --max-bandwidth or --rekey-period)');
    await withStore(v, (s) => setVpn(s, positionals[0]!, patch), { op: 'vpn.set', detail: { id: positionals[0], ...patch } });
    console.log(`VPN ${positionals[0]} updated`);
    return 0;
  }
  if (sub === 'rekey') {
    const { values: v, positionals } = parse(rest, { ...DATA_OPTION }, 1);
    await withStore(v, (s) => requestRekey(s, positionals[0]!), { op: 'vpn.rekey', detail: { id: positionals[0] } });
    console.log(`rekey of ${positionals[0]} requested`);
    return 0;
  }
  if (sub === 'delete') {
    const { values: v, positionals } = parse(rest, { ...DATA_OPTION }, 1);
    await withStore(v, (s) => deleteVpn(s, positionals[0]!), { op: 'vpn.delete', detail: { id: positionals[0] } });
    console.log(`VPN ${positionals[0]} deleted`);
    return 0;
  }
  throw new UsageError(`unknown 'vpn ${sub ?? ''}': try 'kagi vpn --help'`);
}
