/**
 * The remote admin API (issue 11): admin identities made by `kagi admin
 * add`, every admin operation run over the broker against a running
 * control plane with the same store contents as on a local data dir, the
 * audit table naming the admin, and refusals for keys that are not a
 * (live) admin's.
 */
import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { agent, controlPlane, crypto, device, kagiDataDir, tempDir } from '../helpers/control-plane.js';
import { kagiAsync, kagiIn } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { MOSQUITTO_BINARY_SKIP, haveMosquittoBinary, startMosquitto } from '../helpers/mosquitto.js';
import { localTarget, remoteTarget, type AdminTarget } from '../../cli/remote-admin.js';
import { parseBundle } from '../../device/bundle.js';
import { toHex } from '../../protocol/bytes.js';
import { publicKeys } from '../../servers/identity.js';
import type { Store } from '../../servers/store/store.js';
import { SqliteStore } from '../../servers/store/sqlite.js';

/** Every admin operation, in an order that exercises each (including two that fail). */
const pk = (n: number) => crypto.publicKey(new Uint8Array(32).fill(n));
const SEQUENCE: [string, Record<string, unknown>][] = [
  ['vpn.add', { id: 'plant', protocol: 'tcp', port: 5020 }],
  ['vpn.add', { id: 'spare', protocol: 'udp', port: 9000, priority: 2, maxBandwidth: 500_000, rekeyPeriodMs: 60_000 }],
  ['user.add', { id: 'alice', password: 'alice-password' }],
  ['vpn.grant', { vpn: 'plant', user: 'alice' }],
  ['vpn.grant', { vpn: 'plant', user: 'nobody' }], // fails: no such user
  ['vpn.set', { id: 'plant', priority: 3, maxBandwidth: 1_000_000 }],
  ['device.add', { id: 'term-1', mac: '02:00:00:11:00:01', kind: 'terminal', publicKey: pk(1), user: 'alice' }],
  ['device.add', { id: 'relay-1', mac: '02:00:00:11:00:02', kind: 'relay', publicKey: pk(2) }],
  ['device.add', { id: 'plc-1', mac: '02:00:00:11:00:03', kind: 'plaintext', relay: 'relay-1', port: 'p1' }],
  ['device.add', { id: 'term-1', mac: '02:00:00:11:00:04', kind: 'terminal', publicKey: pk(4) }], // fails: exists
  ['device.provision', { id: 'prov-1', mac: '02:00:00:11:00:05', kind: 'terminal', publicKey: pk(5), profile: 'rpi4-node' }],
  ['admin.add', { id: 'second', publicKey: pk(6) }],
  ['vpn.rekey', { id: 'plant' }],
  ['vpn.revoke', { vpn: 'plant', user: 'alice' }],
  ['device.revoke', { id: 'term-1' }],
  ['admin.revoke', { id: 'second' }],
  ['vpn.delete', { id: 'spare' }],
];

/** What the admin operations change, without what differs by place (hash salts, timestamps, actors). */
async function contents(s: Store, actor: RegExp) {
  // The admin that runs the remote side was made before, on the control plane's data dir.
  const devices = (await s.listDevices()).filter((d) => d.id !== 'ops').map((d) => ({ ...d, publicKey: toHex(d.publicKey) })).sort((a, b) => a.id.localeCompare(b.id));
  const vpns = (await s.listVpns()).map((v) => ({ id: v.id, protocol: v.protocol, port: v.port, priority: v.priority, maxBandwidth: v.maxBandwidth, rekeyPeriodMs: v.rekeyPeriodMs }));
  const audit = (await s.auditLog(1000)).filter((r) => actor.test(r.actor)).map((r) => ({ op: r.op, detail: JSON.parse(r.detail) as unknown }));
  return { devices, vpns, users: (await s.getUser('alice')) ? ['alice'] : [], grants: await s.grantsOf('alice'), audit };
}

async function runAll(target: AdminTarget): Promise<string[]> {
  const outcomes = [];
  for (const [op, args] of SEQUENCE) {
    outcomes.push(await target.run(op, args).then(() => `${op} ok`, (e: Error) => `${op} refused: ${e.message.replace(/^refused by the control plane: /, '')}`));
  }
  return outcomes;
}

/** A control plane on the embedded broker, and admin 'ops' made for it with `kagi admin add` on its data dir. */
async function withAdmin(t: Test) {
  const data = tempDir(t);
  const cp = await controlPlane(data);
  t.teardown(() => cp.close());
  const adminFile = join(data, 'ops.json');
  const made = await kagiIn(['admin', 'add', 'ops', '--out', adminFile, '--broker', cp.brokerUrl, '--data', data]);
  t.equal(made.code, 0, `kagi admin add (stderr: ${made.stderr.trim()})`);
  return { data, cp, adminFile };
}

t.test('every admin operation over the broker leaves the store as it does on a data dir', async (t) => {
  const { cp, adminFile } = await withAdmin(t);
  const file = JSON.parse(readFileSync(adminFile, 'utf8')) as Record<string, unknown>;
  t.match(file, { kagi: 1, admin: 'ops', broker: cp.brokerUrl, brokerAuth: 'counter', services: publicKeys(cp.keys) }, 'the admin file: identity, broker, service keys');

  const remote = await remoteTarget(adminFile, 5000);
  t.teardown(() => remote.close());
  const dataB = kagiDataDir(t);
  const local = await localTarget({ data: dataB });
  const [viaBroker, onDisk] = [await runAll(remote), await runAll(local)];
  // kagi why reads the same tables through the same op: the same answer (but for the times, which differ by place).
  const untimed = (x: unknown) => JSON.parse(JSON.stringify(x).replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, 'TIME')) as unknown;
  for (const [device, vpn] of [['term-1', 'plant'], ['plc-1', undefined], ['ghost', 'plant']] as const) {
    const args = { device, ...(vpn ? { vpn } : {}) };
    t.same(untimed(await remote.run('why', args)), untimed(await local.run('why', args)), `why ${device}: the same answer over the broker as on a data dir`);
  }
  await local.close();
  t.same(viaBroker, onDisk, 'the same outcomes, refusals word for word');
  t.equal(viaBroker.filter((x) => x.includes('refused')).length, 2, 'the two bad ones refused');
  t.match(viaBroker[4], /no user 'nobody'/, 'a refusal says why');

  const storeB = new SqliteStore(dataB);
  t.teardown(() => storeB.close());
  const a = await contents(cp.store, /^admin:ops$/);
  t.same(a, await contents(storeB, /^local:/), 'the same devices, VPNs, users, grants and audit rows');
  t.equal(a.audit.length, SEQUENCE.length - 2, 'one audit row per change, none for the refusals');
  t.match(a.audit.find((r) => r.op === 'device.add'), { detail: { id: 'term-1', mac: '02:00:00:11:00:01', kind: 'terminal', user: 'alice' } }, 'device.add: id, MAC, kind, preset user');
  t.notMatch(JSON.stringify((await cp.store.auditLog(1000))), /alice-password|publicKey/, 'no password or key in the audit table');
  t.match(a.devices.find((d) => d.id === 'second'), { kind: 'admin', revoked: true }, 'the second admin, revoked');

  const status = (await remote.run('status')) as { vpns: { id: string }[]; admins: { id: string; revoked: boolean }[] };
  t.same(status.vpns.map((v) => v.id), ['plant'], 'status over the broker');
  t.same(status.admins, [{ id: 'ops', revoked: false }, { id: 'second', revoked: true }], 'admins listed apart from devices');

  // A fleet whose status is more than one control message carries: said so, not a silent timeout.
  for (let i = 0; i < 1000; i++) await cp.store.addDevice({ id: `bulk-${i}`, mac: '02:00:00:13:00:01', publicKey: pk(7), kind: 'terminal' });
  await t.rejects(remote.run('status'), /the answer to status is \d+ KiB, more than one control message carries .*--data or --store/, 'too big for one message: a clear refusal');
  t.equal(((await remote.run('admin.list')) as unknown[]).length, 2, 'and the admin link still works');
});


t.test('the CLI with --remote: a device added over the broker configures against the control plane', async (t) => {
  const { data, cp, adminFile } = await withAdmin(t);
  const remote = (args: string[], input?: string) => kagiIn([...args, '--remote', adminFile], input);

  // One command as a separate process end to end; the rest in-process (kagiIn), the same code.
  const add = await kagiAsync(['vpn', 'add', 'line', '--protocol', 'udp', '--port', '9100', '--priority', '2', '--remote', adminFile]);
  t.equal(add.code, 0, `kagi vpn add --remote (stderr: ${add.stderr.trim()})`);
  t.match(await cp.store.getVpn('line'), { protocol: 'udp', port: 9100, priority: 2 }, 'the VPN is in the running control plane');
  const bundleFile = join(data, 'dev-9.json');
  const dev = await remote(['device', 'add', 'dev-9', '--mac', '02:00:00:12:00:09', '--out', bundleFile, '--broker', cp.brokerUrl]);
  t.equal(dev.code, 0, `kagi device add --remote (stderr: ${dev.stderr.trim()})`);
  const a = agent(parseBundle(JSON.parse(readFileSync(bundleFile, 'utf8'))), cp.brokerUrl);
  t.teardown(() => a.stop({ leave: false }));
  await a.start();
  t.match(await a.configure(), { deviceId: 'dev-9' }, 'its bundle (key made by the CLI, services from the control plane) authenticates');

  const csv = join(data, 'batch.csv');
  writeFileSync(csv, 'id,mac\nb-1,02:00:00:12:01:01\nb-2,not-a-mac\nb-3,02:00:00:12:01:03\n');
  const prov = await remote(['provision', '--csv', csv, '--out', join(data, 'batch')]);
  t.equal(prov.code, 1, 'kagi provision --remote with a bad row: exit 1');
  t.match(prov.stdout, /batch\.csv:3: .*MAC[\s\S]*2 provisioned/, 'the bad row by line, the others done');
  t.ok((await cp.store.getDevice('b-1')) && (await cp.store.getDevice('b-3')), 'registered in the running control plane');
  t.match((await remote(['provision', '--csv', csv, '--out', join(data, 'batch')])).stdout, /0 provisioned, 2 already done/, 'a second run over the broker changes nothing');

  const status = await remote(['status', '--json']);
  t.equal(status.code, 0, 'kagi status --remote');
  const view = JSON.parse(status.stdout) as { vpns: { id: string }[]; devices: { id: string; kind: string }[]; admins: { id: string }[] };
  t.same([view.vpns.map((v) => v.id), view.devices.map((d) => `${d.id}/${d.kind}`), view.admins.map((a) => a.id)], [['line'], ['b-1/terminal', 'b-3/terminal', 'dev-9/terminal'], ['ops']], 'the running control plane’s status');
  const audit = await remote(['audit', '--json']);
  t.match(JSON.parse(audit.stdout), [{ actor: /^local:/, op: 'admin.add' }, { actor: 'admin:ops', op: 'vpn.add', detail: { id: 'line', port: 9100 } }, { actor: 'admin:ops', op: 'device.add' }, { actor: 'admin:ops', op: 'device.provision', detail: { id: 'b-1' } }], 'the audit table names the admin');
  const bad = await remote(['vpn', 'grant', 'line', 'nobody']);
  t.equal(bad.code, 1, 'a refused operation exits 1');
  t.match(bad.stderr, /refused by the control plane: no user 'nobody'/, 'with the reason');
  t.equal((await kagiIn(['vpn', 'rekey', 'line', '--remote', adminFile, '--store', 'postgres://x/y'])).code, 2, '--remote with --store: usage error');
});

t.test('keys that are not a live admin’s are refused and change nothing', async (t) => {
  const { data, cp, adminFile } = await withAdmin(t);
  const before = (await cp.store.auditLog(100)).length;
  const tryAdd = (file: string, vpn: string) => kagiIn(['vpn', 'add', vpn, '--protocol', 'tcp', '--port', '1', '--remote', file, '--timeout', '2s']);
  const asFile = (id: string, secretKey: Uint8Array) => {
    const f = join(data, `${id}-as-admin.json`);
    writeFileSync(f, JSON.stringify({ kagi: 1, admin: id, secretKey: toHex(secretKey), services: publicKeys(cp.keys), broker: cp.brokerUrl }));
    return f;
  };

  const stranger = await tryAdd(asFile('stranger', crypto.generateKeyPair().secretKey), 'v1');
  t.equal(stranger.code, 1, 'an unknown admin: exit 1');
  t.match(stranger.stderr, /cannot reach the control plane's broker .* as admin stranger: broker refused/, 'refused at the broker');

  const wrongKey = await tryAdd(asFile('ops', crypto.generateKeyPair().secretKey), 'v2');
  t.equal(wrongKey.code, 1, 'the admin’s id with another key: exit 1');
  t.match(wrongKey.stderr, /broker refused/, 'refused at the broker (bad password)');

  const b = await device(cp, 'term-x');
  const notAdmin = await tryAdd(asFile('term-x', b.secretKey), 'v3');
  t.equal(notAdmin.code, 1, 'a device’s own key: exit 1');
  t.match(notAdmin.stderr, /refused by the control plane: not an admin/, 'the config server refuses a device');

  t.equal((await kagiIn(['admin', 'revoke', 'ops', '--data', data])).code, 0, 'kagi admin revoke');
  const revoked = await tryAdd(adminFile, 'v4');
  t.equal(revoked.code, 1, 'a revoked admin: exit 1');
  for (const v of ['v1', 'v2', 'v3', 'v4']) t.equal(await cp.store.getVpn(v), undefined, `no VPN ${v}`);
  t.same((await cp.store.auditLog(100)).map((r) => r.op).slice(before), ['admin.revoke'], 'the audit table has the revoke and nothing else');
});

t.test('on an open broker the config server drops an unknown admin’s request unanswered', { skip: haveMosquittoBinary ? false : MOSQUITTO_BINARY_SKIP }, async (t) => {
  const port = await freePort();
  const mosquitto = await startMosquitto(port);
  t.teardown(() => void mosquitto?.kill('SIGKILL'));
  const broker = `mqtt://127.0.0.1:${port}`;
  const data = tempDir(t);
  const cp = await controlPlane(data, { brokerUrl: broker });
  t.teardown(() => cp.close());
  const f = join(data, 'stranger.json');
  writeFileSync(f, JSON.stringify({ kagi: 1, admin: 'stranger', secretKey: toHex(crypto.generateKeyPair().secretKey), services: publicKeys(cp.keys), broker, brokerAuth: 'none' }));
  const r = await kagiAsync(['vpn', 'add', 'v1', '--protocol', 'tcp', '--port', '1', '--remote', f, '--timeout', '1s']);
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, /no answer from the control plane within 1 s/, 'nothing answers a sender the control plane does not know');
  t.equal(await cp.store.getVpn('v1'), undefined, 'no VPN made');
  t.equal((await cp.store.auditLog(10)).length, 0, 'nothing recorded');
});
