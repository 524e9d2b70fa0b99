/**
 * An operator's first day, as issue 17 found it: one control plane per data
 * dir, no silent empty stores, secret files 0600, device files that point
 * at the broker kagi up really serves, and clear refusals for the common
 * mistakes.
 */
import t from 'tap';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kagi, kagiAsync, kagiIn, kagiSpawn, kagiUp, stopChild, watch } from '../helpers/cli.js';
import { controlPlane, kagiDataDir, tempDir } from '../helpers/control-plane.js';
import { startControlPlane } from '../../servers/control-plane.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';

const mode = (p: string) => statSync(p).mode & 0o777;

t.test('admin commands on a missing or empty data dir are refused and make nothing', async (t) => {
  const base = tempDir(t);
  const typo = join(base, 'kagi-dta');
  const st = kagi(['status', '--data', typo]);
  t.equal(st.code, 1, 'status on a mistyped --data fails');
  t.match(st.stderr, /no kagi data in .*kagi-dta \(no kagi\.db\): point --data at the control plane's data dir.*kagi init/, 'says so, and how to point at the right one');
  t.notOk(existsSync(typo), 'and does not create the dir');
  const empty = join(base, 'empty');
  mkdirSync(empty);
  const add = kagi(['device', 'add', 'd1', '--mac', '02:00:00:00:17:01', '--out', join(base, 'd1.json'), '--data', empty]);
  t.equal(add.code, 1, 'device add on an empty dir fails');
  t.match(add.stderr, /no kagi data in/, 'with the same reason');
  t.same(readdirSync(empty), [], 'nothing was created in the dir');
  t.notOk(existsSync(join(base, 'd1.json')), 'and no device file written');

  const init = kagi(['init', '--data', typo]);
  t.equal(init.code, 0, 'kagi init makes a data dir');
  t.match(init.stdout, /kagi data made in .*kagi-dta/, 'and says where');
  t.equal(mode(typo), 0o700, 'the dir is 0700');
  for (const f of ['kagi.db', 'keys.json']) t.equal(mode(join(typo, f)), 0o600, `${f} is 0600`);
  t.match(kagi(['init', '--data', typo]).stdout, /already in .*nothing changed/, 'a second init changes nothing');
  t.equal(kagi(['status', '--data', typo]).code, 0, 'status works on it');
});

t.test('the data dir lock: a second control plane is refused, a released or killed one frees it', async (t) => {
  const data = tempDir(t);
  const lines: string[] = [];
  const a = await controlPlane(data, { lines });
  const crypto = nodeCrypto();
  await t.rejects(startControlPlane({ dataDir: data, crypto, port: 0 }), { name: 'DataDirLockedError', message: new RegExp(`already run by pid ${process.pid} on .*, broker ${a.brokerUrl.replaceAll('.', '\\.')}, since \\d{4}-`) }, 'a second one on the same dir names the holder');
  await t.resolves(startControlPlane({ dataDir: data, crypto, brokerUrl: a.brokerUrl, services: [] }).then((c) => c.close()), 'a process that runs no duty here is not in the way');
  await a.close();
  t.notOk(existsSync(join(data, 'locks', 'config.json')), 'closing removes the holder note');
  chmodSync(join(data, 'keys.json'), 0o644);
  const again = await controlPlane(data, { lines });
  t.teardown(() => again.close());
  t.ok(lines.some((l) => /warn: data dir: .*keys\.json is mode 0644, readable beyond its owner \(chmod 600 /.test(l)), 'a looser file is warned about at start');
});

t.test('two kagi up on one data dir: the second is refused, the first keeps its members and tunnels', async (t) => {
  const data = kagiDataDir(t);
  const echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.teardown(() => echo.close());
  const echoPort = (echo.address() as AddressInfo).port;
  const run = (args: string[], input?: string) => kagiIn([...args, '--data', data], input);

  const up = await kagiUp(['--port', '0', '--data', data, '--poll-interval', '500ms']);
  t.teardown(() => stopChild(up));
  const upOut = watch(up);
  t.not(up.brokerUrl, 'mqtt://127.0.0.1:1883', 'kagi up serves a port other than 1883');
  t.equal(mode(data), 0o700, 'data dir 0700 after up');
  for (const f of ['kagi.db', 'kagi.db-wal', 'kagi.db-shm', 'keys.json', 'broker.json']) t.equal(mode(join(data, f)), 0o600, `${f} 0600 after up`);

  t.equal((await run(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020'])).code, 0, 'vpn add');
  t.equal((await run(['user', 'add', 'alice', '--password-stdin'], 'alice-password\n')).code, 0, 'user add');
  t.equal((await run(['vpn', 'grant', 'plant', 'alice'])).code, 0, 'grant');
  for (const [id, mac] of [['term-a', '02:00:00:00:17:0a'], ['term-b', '02:00:00:00:17:0b']]) {
    t.equal((await run(['device', 'add', id!, '--mac', mac!, '--out', join(data, `${id}.json`)])).code, 0, `device add ${id} without --broker`);
    t.equal(JSON.parse(readFileSync(join(data, `${id}.json`), 'utf8')).broker, up.brokerUrl, `${id}'s file names the broker kagi up serves`);
  }
  const admin = await run(['admin', 'add', 'ops', '--out', join(data, 'ops.json')]);
  t.equal(admin.code, 0, 'admin add');
  t.equal(mode(join(data, 'ops.json')), 0o600, 'admin file 0600');
  t.equal(JSON.parse(readFileSync(join(data, 'ops.json'), 'utf8')).broker, up.brokerUrl, 'and it names the served broker too');
  writeFileSync(join(data, 'rows.csv'), 'id,mac\np-1,02:00:00:00:17:21\n');
  t.equal((await run(['provision', '--csv', join(data, 'rows.csv'), '--out', join(data, 'prov')])).code, 0, 'provision');
  t.equal(mode(join(data, 'prov', 'p-1.json')), 0o600, 'provisioned device file 0600');
  t.equal(mode(join(data, 'prov')), 0o700, 'in a 0700 dir');

  const b = kagiSpawn(['agent', join(data, 'term-b.json'), '--user', 'alice', '--password-stdin', '--target', `plant=127.0.0.1:${echoPort}`]);
  b.stdin!.end('alice-password\n');
  t.teardown(() => stopChild(b));
  const a = kagiSpawn(['agent', join(data, 'term-a.json'), '--user', 'alice', '--password-stdin', '--listen', 'plant=0:term-b']);
  a.stdin!.end('alice-password\n');
  t.teardown(() => stopChild(a));
  await watch(b).until(/joined plant/, 60_000);
  const aOut = await watch(a).until(/listening on 127\.0\.0\.1:\d+/, 60_000);
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(aOut)![1]);
  const echoOnce = async (text: string) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let got = '';
    s.on('data', (d) => (got += d));
    s.write(text);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`echo: got '${got}' of '${text}'`)), 30_000);
      s.on('data', () => got.length >= text.length && (clearTimeout(timer), resolve()));
    });
    s.end();
    return got;
  };
  t.equal(await echoOnce('before the second kagi up'), 'before the second kagi up', 'the tunnel echoes');

  const view = async () => {
    const j = JSON.parse((await run(['status', '--json'])).stdout) as { devices: { id: string; revoked: boolean }[]; vpns: { id: string; epoch: number; members: { device: string }[] }[] };
    return { devices: j.devices.map((d) => [d.id, d.revoked]), vpns: j.vpns.map((v) => [v.id, v.epoch, v.members.map((m) => m.device).sort()]) };
  };
  const before = await view();
  t.same(before.vpns, [['plant', 1, ['term-a', 'term-b']]], 'both members joined');
  const second = await kagiAsync(['up', '--port', '0', '--data', data]);
  t.equal(second.code, 1, 'a second kagi up on the same data dir is refused');
  t.match(second.stderr, new RegExp(`already run by pid ${up.pid} on .*, broker ${up.brokerUrl.replaceAll('.', '\\.')}, since \\d{4}-\\d\\d-\\d\\dT`), 'naming the process holding it: pid, broker, since when');
  t.match(second.stderr, /--instance NAME/, 'and where several instances belong');
  t.same(await view(), before, 'status before = status after');
  t.equal(await echoOnce('after the refusal'), 'after the refusal', 'a new connection through the tunnel still echoes');

  const stopped = stopChild(up);
  t.match(await upOut.until(/kagi up: stopping \(SIGTERM\)/), /devices on this broker are marked offline/, 'kagi up says it is stopping');
  await stopped;
  const after = JSON.parse((await run(['status', '--json'])).stdout) as { devices: { id: string; online: boolean | null }[] };
  t.same(after.devices.filter((d) => d.id.startsWith('term-')).map((d) => [d.id, d.online]), [['term-a', false], ['term-b', false]], 'after it stops, status shows its devices offline, not online');

  const killed = await kagiUp(['--port', '0', '--data', data]);
  killed.kill('SIGKILL');
  await new Promise((r) => killed.once('exit', r));
  const next = await kagiUp(['--port', '0', '--data', data]);
  t.teardown(() => stopChild(next));
  t.match(next.brokerUrl, /^mqtt:\/\//, 'a kill -9 leaves no stale lock: the next kagi up starts');
});

t.test('first-day mistakes get refusals that say what to do', async (t) => {
  const data = kagiDataDir(t);
  const run = (args: string[], input?: string) => kagiIn([...args, '--data', data], input);
  t.equal((await run(['device', 'add', 'm1', '--mac', '02:00:00:00:17:31', '--out', join(data, 'm1.json')])).code, 0, 'a device');
  const dup = await run(['device', 'add', 'm2', '--mac', '02:00:00:00:17:31', '--out', join(data, 'm2.json')]);
  t.equal(dup.code, 1, 'a MAC already used by another device is refused');
  t.match(dup.stderr, /MAC 02:00:00:00:17:31 is already registered to m1.*--allow-duplicate-mac/, 'naming the device and the way out');
  t.notOk(existsSync(join(data, 'm2.json')), 'and no file written');
  t.equal((await run(['device', 'add', 'm2', '--mac', '02:00:00:00:17:31', '--out', join(data, 'm2.json'), '--allow-duplicate-mac'])).code, 0, '--allow-duplicate-mac registers it');
  t.equal(JSON.parse(readFileSync(join(data, 'm1.json'), 'utf8')).broker, 'mqtt://127.0.0.1:1883', 'before any kagi up, files name MQTT\'s own port');

  t.equal((await run(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020'])).code, 0, 'vpn add');
  const vpnAgain = await run(['vpn', 'add', 'plant', '--protocol', 'udp', '--port', '9']);
  t.equal(vpnAgain.code, 1, 'vpn add on an existing VPN is refused');
  t.match(vpnAgain.stderr, /VPN 'plant' already exists \(tcp\/5020\): kagi vpn set plant changes it/, 'saying which, and what to use');
  t.equal((await run(['user', 'add', 'alice', '--password-stdin'], 'alice-password\n')).code, 0, 'user add');
  t.match((await run(['user', 'add', 'alice', '--password-stdin'], 'alice-password\n')).stderr, /user 'alice' already exists/, 'a user twice: says so');

  const moved = await kagiIn(['device', 'set-broker', join(data, 'm1.json'), 'mqtt://10.0.0.5:18830']);
  t.equal(moved.code, 0, 'device set-broker');
  t.match(moved.stdout, /broker mqtt:\/\/127\.0\.0\.1:1883 → mqtt:\/\/10\.0\.0\.5:18830/, 'says what changed');
  t.equal(JSON.parse(readFileSync(join(data, 'm1.json'), 'utf8')).broker, 'mqtt://10.0.0.5:18830', 'the file names the new broker');
  t.equal(mode(join(data, 'm1.json')), 0o600, 'still 0600');
  t.equal((await kagiIn(['device', 'set-broker', join(data, 'm1.json'), 'http://nope'])).code, 2, 'a URL that is not mqtt:// is a usage error');
  t.equal((await kagiIn(['admin', 'set-broker', join(data, 'm1.json'), 'mqtt://h:1'])).code, 2, 'admin set-broker on a device file is a usage error');
  t.match((await kagiIn(['up', '--help'])).stdout, /a bare number is seconds/, 'durations without a unit: --help says they are seconds');
});
