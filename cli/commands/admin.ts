/**
 * Admin commands: device, user, vpn, admin. Each runs one operation of
 * servers/admin-ops.ts on a local data dir or, with --remote, on a running
 * control plane (cli/remote-admin.ts); the audit table records it either
 * way. Key pairs are made here, so a private key never leaves the machine
 * that writes its file.
 */
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { writePrivateFile } from '../../servers/private-file.js';
import { deviceCard, qrPng, qrTerminal } from '../device-card.js';
import { UsageError, bitrate, duration, int, parse, readStdinLine } from '../args.js';
import { BROKER_TLS_HELP, BROKER_TLS_OPTIONS, TARGET_HELP, TARGET_OPTIONS, brokerFor, readAdminFile, withTarget, type AdminTarget } from '../remote-admin.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { fromHex, toHex } from '../../protocol/bytes.js';
import { makeLoginToken } from '../../servers/console/login-token.js';
import { deviceBundle, type NewDevice } from '../../servers/admin.js';
import { parseBundle } from '../../device/bundle.js';
import { describeBrokerTls, isTlsUrl, type BrokerTls } from '../../protocol/broker-tls.js';
import type { Party } from '../../servers/identity.js';
import type { VpnProtocol } from '../../servers/store/store.js';

/**
 * Write a new identity's file only if its registration succeeds: to a
 * temporary file first (so a full disk fails before anything is
 * registered), renamed into place after.
 */
async function writeRegistered(out: string, content: Record<string, unknown>, register: () => Promise<unknown>): Promise<void> {
  const tmp = `${out}.tmp-${process.pid}`;
  writePrivateFile(tmp, JSON.stringify(content, null, 2) + '\n');
  try {
    await register();
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, out);
}

/** A subcommand that is one operation on its positionals, then a line saying it is done. */
async function oneOp(rest: string[], n: number, op: string, args: (p: string[]) => Record<string, unknown>, done: (p: string[]) => string): Promise<number> {
  const { values: v, positionals } = parse(rest, TARGET_OPTIONS, n);
  await withTarget(v, (t) => t.run(op, args(positionals)));
  console.log(done(positionals));
  return 0;
}

/**
 * `kagi device|admin set-broker FILE URL`: point an existing file at
 * another broker without editing JSON; the file is checked first and
 * rewritten 0600 in one step.
 */
function setBroker(rest: string[], what: 'device' | 'admin', check: (file: string, json: unknown) => void): number {
  const { values: v, positionals } = parse(rest, BROKER_TLS_OPTIONS, 2);
  const [file, url] = positionals as [string, string];
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    check(file, json);
  } catch (e) {
    throw new UsageError(`${file}: ${(e as Error).message.replace(/^--remote \S+: /, '')}`);
  }
  const b = brokerFor({ ...v, broker: url, data: '' });
  // The file's own pin goes on with it to another address of the same
  // broker (mqtts:// again, no flags); a plain URL drops it, flags replace it.
  const kept = isTlsUrl(b.broker) && !b.brokerTls && json.brokerTls !== undefined ? json.brokerTls : undefined;
  const before = json.broker;
  const { brokerTls: _dropped, ...rest2 } = json;
  const next = { ...rest2, broker: b.broker, ...(b.brokerTls ? { brokerTls: b.brokerTls } : kept ? { brokerTls: kept } : {}) };
  check(file, next);
  writePrivateFile(file, JSON.stringify(next, null, 2) + '\n');
  const how = next.brokerTls ? ` (TLS: ${describeBrokerTls(next.brokerTls as BrokerTls)})` : isTlsUrl(b.broker) ? ' (TLS: the system CA store)' : '';
  console.log(`${what} file ${file}: broker ${String(before)} → ${b.broker}${how}`);
  return 0;
}

function refuseOverwrite(out: string, force: boolean, what: string): void {
  if (existsSync(out) && !force) throw new UsageError(`${out} exists (it may hold another ${what}'s key); use --force to overwrite`);
}

export const deviceHelp = `usage: kagi device add ID --mac MAC --out FILE [options]
       kagi device revoke ID
       kagi device card FILE [--png OUT]
       kagi device set-broker FILE URL [--broker-pin HEX | --broker-ca FILE]

add     registers a device and writes its bundle (identity, private key,
        service keys) to FILE with mode 0600.
card    shows the device id and its public-key fingerprint, as text and as
        a QR code (--png OUT also writes it as an image), for an installer
        to check on site against kagi provision's output
set-broker  points the device file FILE at another broker (e.g. the one
        kagi up prints, when it is not on port 1883); an mqtts:// URL keeps
        the file's pin unless --broker-pin/--broker-ca give a new one
revoke  revokes a device for good: it leaves every VPN, can never
        authenticate again, and a running control plane disconnects it
        from the broker and rekeys its VPNs within about a second.

options:
  --mac MAC          the device's MAC, e.g. 02:00:00:00:00:01 (required)
  --kind KIND        terminal (default), relay, plaintext or external
  --out FILE         where to write the bundle (required; refused if it exists)
  --force            overwrite FILE
  --allow-duplicate-mac  register even if another device has this MAC
                     (refused by default: usually a typo or a relabelled board)
  --broker URL       broker URL written into the bundle (default: the one
                     kagi up last served on --data, or the --remote file's;
                     else mqtt://127.0.0.1:1883); mqtts://HOST:PORT for TLS
${BROKER_TLS_HELP}
  --user ID          preset user for an app server that joins by itself;
                     its password is read from standard input
  --relay ID         (plaintext) the relay the terminal sits behind
  --port NAME        (plaintext) the relay port it is bound to, e.g. p1
${TARGET_HELP}

The device's key pair is made on this machine; only its public key goes to
the control plane, also with --remote.

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
  if (sub === 'set-broker') return setBroker(rest, 'device', (_f, j) => void parseBundle(j));
  if (sub === 'revoke') return oneOp(rest, 1, 'device.revoke', (p) => ({ id: p[0] }), (p) => `device ${p[0]} revoked: it can never authenticate again; a running control plane disconnects it and rekeys its VPNs`);
  if (sub !== 'add') throw new UsageError(`unknown 'device ${sub ?? ''}': try 'kagi device --help'`);
  const { values: v, positionals } = parse(rest, { ...TARGET_OPTIONS, mac: { type: 'string' }, kind: { type: 'string', default: 'terminal' }, out: { type: 'string' }, force: { type: 'boolean', default: false }, broker: { type: 'string' }, 'allow-duplicate-mac': { type: 'boolean', default: false }, user: { type: 'string' }, relay: { type: 'string' }, port: { type: 'string' }, ...BROKER_TLS_OPTIONS }, 1);
  if (!v.mac) throw new UsageError('--mac is required');
  if (!v.out) throw new UsageError('--out is required');
  if (!['terminal', 'relay', 'plaintext', 'external'].includes(v.kind)) throw new UsageError(`--kind must be terminal, relay, plaintext or external`);
  refuseOverwrite(v.out, v.force, 'device');
  const broker = brokerFor(v);
  const password = v.user ? await readStdinLine(`password for ${v.user}`) : undefined;
  const kp = v.kind === 'plaintext' ? undefined : nodeCrypto().generateKeyPair();
  const d: NewDevice = { id: positionals[0]!, mac: v.mac, kind: v.kind as NewDevice['kind'], ...(kp ? { publicKey: kp.publicKey } : {}), ...(v.relay ? { relay: v.relay } : {}), ...(v.port ? { port: v.port } : {}), ...(v['allow-duplicate-mac'] ? { allowDuplicateMac: true } : {}) };
  await withTarget(v, async (t) => {
    const bundle = deviceBundle(d, kp?.secretKey, await t.services(), { ...broker, ...(v.user ? { user: v.user, password } : {}) });
    await writeRegistered(v.out!, bundle, () => t.run('device.add', { ...d, ...(v.user ? { user: v.user } : {}) }));
  });
  console.log(`device ${positionals[0]} added (${v.kind}, ${v.mac}); bundle written to ${v.out}${v.kind === 'plaintext' ? '' : `, broker ${broker.broker}${isTlsUrl(broker.broker) ? ` (TLS: ${describeBrokerTls(broker.brokerTls)})` : ''}`}`);
  return 0;
}

export const userHelp = `usage: kagi user add ID --password-stdin [--data DIR | --remote FILE]
       kagi user passwd ID --password-stdin [--data DIR | --remote FILE]

add: adds a user; the password (at least 8 characters) is read from
standard input and stored as an scrypt hash (with --remote it travels
sealed to the config server, which hashes it).
passwd: gives the user a new password (read the same way) and retires every
resumption ticket the user's devices hold: each must join once more with
the new password.

${TARGET_HELP}`;

export async function user(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'add' && sub !== 'passwd') throw new UsageError(`unknown 'user ${sub ?? ''}': try 'kagi user --help'`);
  const { values: v, positionals } = parse(rest, { ...TARGET_OPTIONS, 'password-stdin': { type: 'boolean', default: false } }, 1);
  if (!v['password-stdin']) throw new UsageError('--password-stdin is required (passwords never go on the command line)');
  const password = await readStdinLine(`${sub === 'add' ? 'password' : 'new password'} for ${positionals[0]}`);
  await withTarget(v, (t) => t.run(`user.${sub}`, { id: positionals[0], password }));
  console.log(sub === 'add' ? `user ${positionals[0]} added` : `user ${positionals[0]}: password changed, its tickets retired`);
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

--rekey-period (e.g. 30m, 1h; a bare number is seconds; default: the control plane's, kagi up
--rekey-period) is how often the VPN is rekeyed; members that do not answer
polls are left out and catch up when they answer again.

options:
${TARGET_HELP}`;

export async function vpn(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'add') {
    const { values: v, positionals } = parse(rest, { ...TARGET_OPTIONS, protocol: { type: 'string' }, port: { type: 'string' }, priority: { type: 'string' }, 'max-bandwidth': { type: 'string' }, 'rekey-period': { type: 'string' } }, 1);
    if (!v.protocol) throw new UsageError('--protocol is required (tcp or udp)');
    const args = { id: positionals[0], protocol: v.protocol as VpnProtocol, port: int(v.port, 'port'), priority: int(v.priority, 'priority', 0), maxBandwidth: bitrate(v['max-bandwidth'], 'max-bandwidth', 0), rekeyPeriodMs: duration(v['rekey-period'], 'rekey-period', 0) };
    await withTarget(v, (t) => t.run('vpn.add', args));
    console.log(`VPN ${positionals[0]} added (${v.protocol}/${v.port})`);
    return 0;
  }
  if (sub === 'grant') return oneOp(rest, 2, 'vpn.grant', (p) => ({ vpn: p[0], user: p[1] }), (p) => `user ${p[1]} may join ${p[0]}`);
  if (sub === 'revoke') return oneOp(rest, 2, 'vpn.revoke', (p) => ({ vpn: p[0], user: p[1] }), (p) => `user ${p[1]} revoked from ${p[0]}`);
  if (sub === 'set') {
    const { values: v, positionals } = parse(rest, { ...TARGET_OPTIONS, priority: { type: 'string' }, 'max-bandwidth': { type: 'string' }, 'rekey-period': { type: 'string' } }, 1);
    const patch = {
      ...(v.priority !== undefined ? { priority: int(v.priority, 'priority') } : {}),
      ...(v['max-bandwidth'] !== undefined ? { maxBandwidth: bitrate(v['max-bandwidth'], 'max-bandwidth') } : {}),
      ...(v['rekey-period'] !== undefined ? { rekeyPeriodMs: duration(v['rekey-period'], 'rekey-period') } : {}),
    };
    if (Object.keys(patch).length === 0) throw new UsageError('vpn set: nothing to change (give --priority, --max-bandwidth or --rekey-period)');
    await withTarget(v, (t) => t.run('vpn.set', { id: positionals[0], ...patch }));
    console.log(`VPN ${positionals[0]} updated`);
    return 0;
  }
  if (sub === 'rekey') return oneOp(rest, 1, 'vpn.rekey', (p) => ({ id: p[0] }), (p) => `rekey of ${p[0]} requested`);
  if (sub === 'delete') return oneOp(rest, 1, 'vpn.delete', (p) => ({ id: p[0] }), (p) => `VPN ${p[0]} deleted`);
  throw new UsageError(`unknown 'vpn ${sub ?? ''}': try 'kagi vpn --help'`);
}

export const adminHelp = `usage: kagi admin add ID --out FILE [--broker URL] [--broker-pin HEX | --broker-ca FILE] [--broker-auth MODE] [--force]
       kagi admin revoke ID
       kagi admin list
       kagi admin set-broker FILE URL [--broker-pin HEX | --broker-ca FILE]
       kagi admin login FILE --url URL

add     makes an operator identity for the remote admin API: a key pair
        made here, its public key registered with the control plane, and
        FILE (mode 0600) holding the private key, the services' public
        keys and the broker. Then any admin command takes --remote FILE.
revoke  the admin's requests are refused from now on (and, on the
        embedded broker, its connection too)
list    the admins and whether they are revoked
set-broker  points the admin file FILE at another broker (an mqtts:// URL
        keeps the file's pin unless --broker-pin/--broker-ca give a new one)
login   prints a one-time URL that signs the admin of FILE in to the web
        console of kagi up --ui-port (URL: the console's address, as
        kagi up prints it). Made on this machine from FILE's key, no
        password and no network: open it within 5 minutes, once. The
        session it starts lasts as long as kagi up --ui-session says.

options:
  --out FILE         where to write the admin file (required; refused if it exists)
  --force            overwrite FILE
  --broker URL       the control plane's broker, written into FILE
                     (default: the --remote file's, else the one kagi up
                     last served on --data, else mqtt://127.0.0.1:1883);
                     mqtts://HOST:PORT for TLS
${BROKER_TLS_HELP}
  --broker-auth MODE how the admin logs in to that broker: counter (kagi's
                     embedded broker, default), static (Mosquitto with
                     kagi up --dynsec) or none (a broker that checks nothing)
${TARGET_HELP}

An admin id is not a device: it cannot authenticate, join or hold keys.
With --remote, FILE.state beside the admin file keeps its message
counters; use one admin file per operator and machine.`;

export async function admin(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'list') {
    const { values: v } = parse(rest, { ...TARGET_OPTIONS, json: { type: 'boolean', default: false } }, 0);
    const admins = (await withTarget(v, (t) => t.run('admin.list'))) as { id: string; revoked: boolean }[];
    if (v.json) console.log(JSON.stringify(admins, null, 2));
    else for (const a of admins) console.log(`${a.id}${a.revoked ? '  REVOKED' : ''}`);
    if (!v.json && admins.length === 0) console.log('no admins (kagi admin add ID --out FILE makes one)');
    return 0;
  }
  if (sub === 'set-broker') return setBroker(rest, 'admin', (f) => void readAdminFile(f));
  if (sub === 'login') return adminLogin(rest);
  if (sub === 'revoke') return oneOp(rest, 1, 'admin.revoke', (p) => ({ id: p[0] }), (p) => `admin ${p[0]} revoked`);
  if (sub !== 'add') throw new UsageError(`unknown 'admin ${sub ?? ''}': try 'kagi admin --help'`);
  const { values: v, positionals } = parse(rest, { ...TARGET_OPTIONS, out: { type: 'string' }, force: { type: 'boolean', default: false }, broker: { type: 'string' }, 'broker-auth': { type: 'string' }, ...BROKER_TLS_OPTIONS }, 1);
  if (!v.out) throw new UsageError('--out is required');
  const via = v.remote ? readAdminFile(v.remote) : undefined;
  const brokerAuth = v['broker-auth'] ?? via?.brokerAuth ?? 'counter';
  if (!['counter', 'static', 'none'].includes(brokerAuth)) throw new UsageError('--broker-auth must be counter, static or none');
  refuseOverwrite(v.out, v.force, 'admin');
  const kp = nodeCrypto().generateKeyPair();
  await withTarget(v, async (t: AdminTarget) => {
    const services: Record<Party, string> = await t.services();
    const file = { kagi: 1, admin: positionals[0], secretKey: toHex(kp.secretKey), services, ...brokerFor(v), brokerAuth };
    await writeRegistered(v.out!, file, () => t.run('admin.add', { id: positionals[0], publicKey: kp.publicKey }));
  });
  console.log(`admin ${positionals[0]} added; its file is ${v.out} (keep it like a password): kagi … --remote ${v.out}`);
  return 0;
}

/** `kagi admin login FILE --url URL`: the console's sign-in link, made here (servers/console/login-token.ts). */
function adminLogin(rest: string[]): number {
  const { values: v, positionals } = parse(rest, { url: { type: 'string' } }, 1);
  if (!v.url) throw new UsageError("--url is required: the console's address, as kagi up --ui-port prints it (e.g. http://127.0.0.1:8080/)");
  let url: URL;
  try {
    url = new URL(v.url);
  } catch {
    throw new UsageError(`--url: not a URL: ${v.url}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url: the console speaks http(s), not ${url.protocol}`);
  const a = readAdminFile(positionals[0]!);
  const token = makeLoginToken(nodeCrypto(), a.id, a.secretKey, fromHex(a.services.config));
  // In the fragment: a browser never sends it to the server, nor in a Referer; the page posts it once.
  url.hash = `login=${token}`;
  console.log(url.href);
  return 0;
}
