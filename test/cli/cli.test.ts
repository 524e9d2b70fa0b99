/**
 * The kagi command as a user runs it. Admin commands run in-process
 * (kagiIn: the binary's own dispatch, output and exit code captured);
 * help, one admin command end to end, standard input through a pipe,
 * exit codes and bad arguments also through real spawns.
 */
import t, { type Test } from 'tap';
import { createServer, type AddressInfo } from 'node:net';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { kagi, kagiIn, kagiSpawn, kagiUp, stopChild, watch } from '../helpers/cli.js';
import { kagiDataDir, tempDir } from '../helpers/control-plane.js';
import { freePortRange } from '../helpers/ports.js';

t.test('help on every command', async (t) => {
  const top = kagi(['--help']);
  t.equal(top.code, 0, 'kagi --help exits 0');
  for (const cmd of ['up', 'device', 'user', 'vpn', 'admin', 'agent', 'status', 'demo', 'version', 'bundle', 'provision', 'audit']) {
    t.match(top.stdout, cmd, `top-level help lists ${cmd}`);
    const r = await kagiIn([cmd, '--help']);
    t.ok(r.code === 0 && r.stdout.startsWith('usage: kagi'), `kagi ${cmd} --help prints usage`);
  }
  const bad = kagi(['frobnicate']);
  t.equal(bad.code, 2, 'unknown command exits 2');
  t.match(bad.stderr, /unknown command 'frobnicate'/, 'and says so');
});

t.test('demo runs the first story and exits 0', async (t) => {
  const r = kagi(['demo']);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.trim()})`);
  for (const s of ['S101–S104', 'S105–S110', 'hello through the VPN', 'S205–S212', 'hello plc', 'port p1: RESTRICTED', 'embodiments 1 and 2 complete']) t.match(r.stdout, s, `prints ${s}`);
});

t.test('admin commands on a data dir', async (t) => {
  const data = kagiDataDir(t);
  const out = join(data, 'term-1.json');
  const add = kagi(['device', 'add', 'term-1', '--mac', '02:00:00:00:00:01', '--out', out, '--data', data]);
  t.equal(add.code, 0, 'device add');
  t.equal(statSync(out).mode & 0o777, 0o600, 'bundle written 0600');
  const bundle = JSON.parse(readFileSync(out, 'utf8'));
  t.match(bundle, { kagi: 1, id: 'term-1', kind: 'terminal', mac: '02:00:00:00:00:01' }, 'bundle names the device');
  t.equal(statSync(join(data, 'keys.json')).mode & 0o777, 0o600, 'service keys 0600');
  const again = await kagiIn(['device', 'add', 'term-2', '--mac', '02:00:00:00:00:02', '--out', out, '--data', data]);
  t.equal(again.code, 2, 'refused: the file exists');
  t.match(again.stderr, /exists .* --force/, 'says how to overwrite');
  t.equal((await kagiIn(['device', 'add', 'term-2', '--mac', 'nope', '--out', join(data, 'x.json'), '--data', data])).code, 1, 'bad MAC refused');
  t.notOk(existsSync(join(data, 'x.json')), 'and no file written');
  t.equal((await kagiIn(['device', 'add', 'auth', '--mac', '02:00:00:00:00:03', '--out', join(data, 'y.json'), '--data', data])).code, 1, 'service ids are reserved');
  t.equal(kagi(['user', 'add', 'alice', '--password-stdin', '--data', data], 'alice-password\n').code, 0, 'user add reads stdin');
  t.equal(kagi(['user', 'add', 'bob', '--data', data]).code, 2, 'user add without --password-stdin is a usage error');
  t.equal((await kagiIn(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020', '--data', data])).code, 0, 'vpn add');
  t.equal((await kagiIn(['vpn', 'add', 'bad', '--protocol', 'icmp', '--port', '1', '--data', data])).code, 1, 'bad protocol refused');
  t.equal((await kagiIn(['vpn', 'add', 'fast', '--protocol', 'udp', '--port', '5021', '--rekey-period', '10m', '--data', data])).code, 0, 'vpn add with its own rekey period');
  const badPeriod = await kagiIn(['vpn', 'add', 'slow', '--protocol', 'udp', '--port', '5022', '--rekey-period', 'weekly', '--data', data]);
  t.equal(badPeriod.code, 2, 'a rekey period that is not a duration is a usage error');
  t.match(badPeriod.stderr, /--rekey-period must be a duration like 500ms, 30s, 5m, 1h or 30d, not 'weekly'/, 'and says what a duration looks like');
  const rekey = await kagiIn(['vpn', 'rekey', 'plant', '--data', data]);
  t.equal(rekey.code, 0, 'vpn rekey');
  t.match(rekey.stdout, /rekey of plant requested/, 'says the rekey is requested');
  t.equal((await kagiIn(['vpn', 'rekey', 'nosuch', '--data', data])).code, 1, 'rekey of an unknown VPN refused');
  t.equal((await kagiIn(['vpn', 'grant', 'plant', 'alice', '--data', data])).code, 0, 'grant');
  t.equal((await kagiIn(['vpn', 'grant', 'plant', 'nobody', '--data', data])).code, 1, 'grant to an unknown user refused');
  t.equal((await kagiIn(['vpn', 'revoke', 'plant', 'nobody', '--data', data])).code, 1, 'revoking what was never granted is an error');
  const st = await kagiIn(['status', '--json', '--data', data]);
  t.equal(st.code, 0, 'status --json');
  const j = JSON.parse(st.stdout);
  t.same(j.devices.map((d: { id: string }) => d.id), ['term-1'], 'status lists the device');
  t.match(j.vpns.find((x: { id: string }) => x.id === 'plant'), { id: 'plant', protocol: 'tcp', port: 5020, members: [] }, 'and the VPN');
});

t.test('the VPN management table through the CLI: priority, maximum bandwidth, status', async (t) => {
  const data = kagiDataDir(t);
  t.equal((await kagiIn(['vpn', 'add', 'alarms', '--protocol', 'udp', '--port', '5030', '--priority', '10', '--max-bandwidth', '2mbit', '--data', data])).code, 0, 'vpn add with priority and maximum');
  t.equal((await kagiIn(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020', '--data', data])).code, 0, 'vpn add with the defaults');
  const set = await kagiIn(['vpn', 'set', 'plant', '--priority', '5', '--max-bandwidth', '1.5mbit', '--data', data]);
  t.equal(set.code, 0, 'vpn set');
  t.match(set.stdout, /VPN plant updated/, 'says so');
  const badRate = await kagiIn(['vpn', 'set', 'plant', '--max-bandwidth', 'fast', '--data', data]);
  t.equal(badRate.code, 2, 'a rate that is not a rate is a usage error');
  t.match(badRate.stderr, /--max-bandwidth must be a rate like 500kbit, 24mbit or 1gbit, not 'fast'/, 'and says what a rate looks like');
  const nothing = await kagiIn(['vpn', 'set', 'plant', '--data', data]);
  t.equal(nothing.code, 2, 'vpn set with nothing to change is a usage error');
  t.match(nothing.stderr, /nothing to change/, 'and says so');
  const unknown = await kagiIn(['vpn', 'set', 'nosuch', '--priority', '1', '--data', data]);
  t.equal(unknown.code, 1, 'vpn set on an unknown VPN is refused');
  t.match(unknown.stderr, /nosuch/, 'naming it');
  const j = JSON.parse((await kagiIn(['status', '--json', '--data', data])).stdout);
  const row = (id: string) => j.vpns.find((x: { id: string }) => x.id === id);
  t.match(row('alarms'), { priority: 10, maxBandwidth: 2_000_000, users: 0, cut: false }, 'status: alarms as added');
  t.match(row('plant'), { priority: 5, maxBandwidth: 1_500_000, users: 0, cut: false }, 'status: plant as set');
  const table = (await kagiIn(['status', '--data', data])).stdout;
  t.match(table, /alarms\s+udp\/5030\s+priority 10\s+max 2 mbit\/s\s+idle/, 'the table shows priority, maximum and plan (no members: idle)');
  t.match(table, /plant\s+tcp\/5020\s+priority 5\s+max 1\.5 mbit\/s/, 'fractional rates shown as given');
});

t.test('kagi up: bandwidth flags are checked before anything starts', async (t) => {
  const noCap = await kagiIn(['up', '--port', '0', '--data', tempDir(t), '--tc-dev', 'eth0']);
  t.equal(noCap.code, 2, '--tc-dev without --link-capacity is a usage error');
  t.match(noCap.stderr, /--tc-dev needs --link-capacity RATE/, 'and says what is missing');
  const badCap = await kagiIn(['up', '--port', '0', '--data', tempDir(t), '--link-capacity', '10 apples']);
  t.equal(badCap.code, 2, 'a bad capacity is a usage error');
  t.match(badCap.stderr, /--link-capacity must be a rate/, 'naming the flag');
  const noDev = kagi(['up', '--port', '0', '--data', tempDir(t), '--link-capacity', '10mbit', '--tc-dev', 'kagi-nosuch0']);
  t.not(noDev.code, 0, 'a tc interface that does not exist: refuses to start rather than run unshaped');
  t.match(noDev.stderr, /tc/, 'and names tc');
});

t.test('the audit table records every change made with the CLI, never a secret', async (t) => {
  const data = kagiDataDir(t);
  const run = (args: string[], input?: string) => kagiIn([...args, '--data', data], input);
  t.equal((await run(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020'])).code, 0, 'vpn add');
  t.equal((await run(['user', 'add', 'alice', '--password-stdin'], 'secret-password-1\n')).code, 0, 'user add');
  t.equal((await run(['vpn', 'grant', 'plant', 'alice'])).code, 0, 'grant');
  t.equal((await run(['vpn', 'set', 'plant', '--priority', '3'])).code, 0, 'vpn set');
  t.equal((await run(['device', 'add', 'd1', '--mac', '02:00:00:00:00:51', '--out', join(data, 'd1.json')])).code, 0, 'device add');
  t.equal((await run(['vpn', 'grant', 'plant', 'nobody'])).code, 1, 'a failed command');
  t.equal((await run(['device', 'revoke', 'd1'])).code, 0, 'device revoke');
  t.equal((await run(['vpn', 'rekey', 'plant'])).code, 0, 'vpn rekey');
  t.equal((await run(['vpn', 'revoke', 'plant', 'alice'])).code, 0, 'vpn revoke');
  t.equal((await run(['vpn', 'delete', 'plant'])).code, 0, 'vpn delete');
  const r = (await run(['audit', '--json']));
  t.equal(r.code, 0, 'kagi audit --json');
  const rows = JSON.parse(r.stdout) as { at: string; actor: string; op: string; detail: Record<string, unknown> }[];
  t.same(rows.map((x) => x.op), ['vpn.add', 'user.add', 'vpn.grant', 'vpn.set', 'device.add', 'device.revoke', 'vpn.rekey', 'vpn.revoke', 'vpn.delete'], 'each change, in order; the failed one is not a change');
  t.match(rows[0], { actor: /^local:.+@.+$/, at: /^\d{4}-\d\d-\d\dT/, detail: { id: 'plant', protocol: 'tcp', port: 5020, priority: 0, maxBandwidth: 0, rekeyPeriodMs: 0 } }, 'who, when and what');
  t.match(rows[4]!.detail, { id: 'd1', mac: '02:00:00:00:00:51', kind: 'terminal' }, 'device add: id, MAC, kind');
  t.notMatch(r.stdout, /secret-password-1|secretKey/, 'no password or key in the audit table');
  t.match((await run(['audit', '--limit', '2'])).stdout, /vpn\.revoke[\s\S]*vpn\.delete/, 'the table form, newest last');
  t.equal((await run(['audit', '--limit', 'lots'])).code, 2, 'a bad --limit is a usage error');
});

t.test('kagi device revoke on a data dir', async (t) => {
  const data = kagiDataDir(t);
  t.equal((await kagiIn(['device', 'add', 'term-r', '--mac', '02:00:00:00:00:71', '--out', join(data, 'r.json'), '--data', data])).code, 0, 'a device');
  const r = await kagiIn(['device', 'revoke', 'term-r', '--data', data]);
  t.equal(r.code, 0, 'revoke');
  t.match(r.stdout, /device term-r revoked: it can never authenticate again/, 'says what it means');
  t.match(JSON.parse((await kagiIn(['status', '--json', '--data', data])).stdout).devices, [{ id: 'term-r', revoked: true }], 'status shows it revoked');
  const unknown = await kagiIn(['device', 'revoke', 'nobody', '--data', data]);
  t.equal(unknown.code, 1, 'an unknown device is an error');
  t.match(unknown.stderr, /no device 'nobody'/, 'naming it');
  t.equal((await kagiIn(['device', 'frob', '--data', data])).code, 2, 'an unknown device subcommand is a usage error');
});

t.test('kagi up: JSON log lines when not on a terminal, and /metrics', async (t) => {
  const up = kagiSpawn(['up', '--port', '0', '--metrics-port', '0', '--data', tempDir(t)]);
  t.teardown(() => stopChild(up));
  const out = watch(up);
  const line = await out.until(/metrics http:\/\/127\.0\.0\.1:\d+\/metrics/);
  const first = line.trim().split('\n').map((l) => JSON.parse(l) as { time: string; level: string; msg: string });
  t.ok(first.every((l) => typeof l.time === 'string' && ['debug', 'info', 'warn'].includes(l.level) && typeof l.msg === 'string'), 'every line is a JSON object with time, level and msg');
  const url = /metrics (http:\/\/[^\s"]+)/.exec(line)![1]!;
  const text = await (await fetch(url)).text();
  t.match(text, /# TYPE kagi_joins_total counter\nkagi_joins_total 0/, '/metrics answers in the Prometheus text format');
  const bad = await kagiIn(['up', '--port', '0', '--data', tempDir(t), '--log-format', 'xml']);
  t.equal(bad.code, 2, 'a bad --log-format is a usage error');
  t.match(bad.stderr, /--log-format must be json or text/, 'naming the choices');
});

t.test('kagi up refuses liveness settings that would evict members that send continue', async (t) => {
  const r = await kagiIn(['up', '--port', '0', '--data', tempDir(t), '--poll-interval', '10s', '--evict-after', '3', '--continue-after', '2m']);
  t.equal(r.code, 2, 'usage error, nothing started');
  t.match(r.stderr, /continue-after \(120000 ms\) must be below evict-after × poll interval \(30000 ms\)/, 'names the rule and the numbers');
  t.match(r.stderr, /pass a continue-after below 30000 ms \(or leave it out: the default fits\), or raise evict-after/, 'and says which flag to change');
  t.match((await kagiIn(['up', '--help'])).stdout, /--poll-interval D[\s\S]*--evict-after N[\s\S]*--continue-after D[\s\S]*--rekey-period D/, 'kagi up --help lists the monitoring flags');
});

t.test('kagi up on a port in use: one line, exit non-zero', async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.teardown(() => blocker.close());
  const port = (blocker.address() as AddressInfo).port;
  const r = kagi(['up', '--port', String(port), '--data', tempDir(t)]);
  t.not(r.code, 0, 'exit code is not 0');
  const lines = r.stderr.trim().split('\n');
  t.equal(lines.length, 1, 'one line');
  t.match(lines[0], new RegExp(`port ${port} .* in use: choose another with --port N .* --broker mqtt://127.0.0.1:${port}`), 'names the port, --port and --broker');
});

t.test('an app server joins by itself with the preset credentials in its bundle', async (t) => {
  const data = kagiDataDir(t);
  t.equal((await kagiIn(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020', '--data', data])).code, 0, 'vpn add');
  t.equal((await kagiIn(['user', 'add', 'app', '--password-stdin', '--data', data], 'app-password\n')).code, 0, 'user add');
  t.equal((await kagiIn(['vpn', 'grant', 'plant', 'app', '--data', data])).code, 0, 'grant');
  const up = await kagiUp(['--port', '0', '--data', data]);
  t.teardown(() => stopChild(up));
  const brokerUrl = up.brokerUrl;
  const out = join(data, 'app.json');
  const add = await kagiIn(['device', 'add', 'app-1', '--mac', '02:00:00:00:00:aa', '--out', out, '--broker', brokerUrl, '--user', 'app', '--data', data], 'app-password\n');
  t.equal(add.code, 0, 'device add --user stores preset credentials');
  t.match(JSON.parse(readFileSync(out, 'utf8')), { user: 'app', password: 'app-password' }, 'in the bundle');
  const agent = kagiSpawn(['agent', out]);
  t.teardown(() => stopChild(agent));
  const joined = await new Promise<string>((resolve, reject) => {
    let s = '';
    agent.stdout!.on('data', (d) => {
      s += d;
      if (s.includes('joined plant')) resolve(s);
    });
    agent.once('exit', (code) => reject(new Error(`agent exited ${code}: ${s}`)));
  });
  t.match(joined, /state: joined[\s\S]*joined plant \(tcp\/5020, epoch 1\)/, 'it joined without being given a user');
});

/** VPN plant granted to pam, kagi up on a free port, and relay-1 registered: what the relay tests start from. */
async function relaySite(t: Test) {
  const data = kagiDataDir(t);
  const run = (args: string[], input?: string) => kagiIn([...args, '--data', data], input);
  t.equal((await run(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020'])).code, 0, 'vpn add');
  t.equal((await run(['user', 'add', 'pam', '--password-stdin'], 'pam-password\n')).code, 0, 'user add');
  t.equal((await run(['vpn', 'grant', 'plant', 'pam'])).code, 0, 'grant');
  const up = await kagiUp(['--port', '0', '--data', data]);
  t.teardown(() => stopChild(up));
  t.equal((await run(['device', 'add', 'relay-1', '--mac', '02:00:00:00:00:b1', '--kind', 'relay', '--out', join(data, 'relay.json'), '--broker', up.brokerUrl])).code, 0, 'relay added');
  return { data, run };
}

t.test('relay and plaintext terminal through the CLI; vpn delete; status shows the port', async (t) => {
  const { data, run } = await relaySite(t);
  const noBinding = (await run(['device', 'add', 'plain-x', '--mac', '02:00:00:00:00:c0', '--kind', 'plaintext', '--out', join(data, 'x.json')]));
  t.match(noBinding.stderr, /needs --relay ID and --port NAME/, 'a plaintext terminal needs its binding');
  t.equal((await run(['device', 'add', 'plain-1', '--mac', '02:00:00:00:00:c1', '--kind', 'plaintext', '--relay', 'relay-1', '--port', 'p1', '--out', join(data, 'plain.json')])).code, 0, 'plaintext added');
  t.notMatch(readFileSync(join(data, 'plain.json'), 'utf8'), /secretKey/, 'its file holds no key');

  const relayProc = kagiSpawn(['agent', join(data, 'relay.json'), '--profile', 'node-relay-4port', '--port-base', '0']);
  t.teardown(() => stopChild(relayProc));
  const relay = watch(relayProc);
  const relayOut = await relay.until(/port p4 on 127\.0\.0\.1:\d+/);
  const p1 = /port p1 on 127\.0\.0\.1:(\d+)/.exec(relayOut)![1]!;
  t.match(relayOut, /relay relay-1 configured \(profile node-relay-4port\)/, 'the relay configured itself (6a)');
  const plainProc = kagiSpawn(['agent', join(data, 'plain.json'), '--via', `127.0.0.1:${p1}`, '--user', 'pam', '--password-stdin']);
  t.teardown(() => stopChild(plainProc));
  plainProc.stdin!.end('pam-password\n');
  const plain = watch(plainProc);
  t.match(await plain.until(/joined plant/), /plain-1 configured through relay-1\/p1[\s\S]*joined plant \(tcp\/5020\)/, 'the plaintext terminal joined through its relay port');
  t.match(await relay.until(/port p1: FORWARDING/), /port p1: FORWARDING \(plain-1\)/, 'the relay port is FORWARDING');
  const st = JSON.parse((await run(['status', '--json'])).stdout);
  t.match(st.ports, [{ relay: 'relay-1', port: 'p1', terminal: 'plain-1', state: 'FORWARDING', vpns: ['plant'] }], 'status shows the port, its state and its terminal');

  t.equal((await run(['vpn', 'delete', 'plant'])).code, 0, 'vpn delete');
  t.match(await relay.until(/port p1: RESTRICTED/), /port p1: RESTRICTED/, 'the running relay restricts the port');
  t.match(await plain.until(/restricted: plant/), /restricted: plant/, 'and tells the plaintext terminal');
  t.match(JSON.parse((await run(['status', '--json'])).stdout).ports, [{ terminal: 'plain-1', state: 'RESTRICTED' }], 'status agrees');
  t.equal((await run(['vpn', 'delete', 'plant'])).code, 1, 'deleting it again is an error');
});

t.test('a plaintext terminal waits for its relay port, and comes back through it after the relay restarts', async (t) => {
  const { data, run } = await relaySite(t);
  t.equal((await run(['device', 'add', 'plain-1', '--mac', '02:00:00:00:00:c1', '--kind', 'plaintext', '--relay', 'relay-1', '--port', 'p1', '--out', join(data, 'plain.json')])).code, 0, 'plaintext added');

  // p1 is on --port-base itself: the terminal is told a port nobody serves yet.
  // The relay binds p1..p4, so all four must be free, now and at its restart.
  const p1 = await freePortRange(4);
  const plainProc = kagiSpawn(['agent', join(data, 'plain.json'), '--via', `127.0.0.1:${p1}`, '--user', 'pam', '--password-stdin']);
  t.teardown(() => stopChild(plainProc));
  plainProc.stdin!.end('pam-password\n');
  const plain = watch(plainProc);
  t.match(await plain.until(/waiting for the relay port/), new RegExp(`waiting for the relay port 127\\.0\\.0\\.1:${p1}: .*ECONNREFUSED`), 'no relay port yet: it waits, it does not exit');
  t.equal(plainProc.exitCode, null, 'still running');

  const startRelay = async () => {
    const proc = kagiSpawn(['agent', join(data, 'relay.json'), '--profile', 'node-relay-4port', '--port-base', String(p1)]);
    t.teardown(() => stopChild(proc));
    let err = '';
    proc.stderr!.on('data', (d) => (err += d));
    await watch(proc).until(new RegExp(`port p1 on 127\\.0\\.0\\.1:${p1}`)).catch((e: Error) => Promise.reject(new Error(`${e.message}\nrelay stderr: ${err}`)));
    return proc;
  };
  const relay = await startRelay();
  t.match(await plain.until(/joined plant/), /plain-1 configured through relay-1\/p1[\s\S]*joined plant \(tcp\/5020\)/, 'once the port is there, it configures and joins');

  await stopChild(relay);
  t.match(await plain.until(/the relay port closed; connecting again/), /the relay port closed/, 'the relay went away: it says so and keeps going');
  const before = plain.text().split('joined plant').length;
  await startRelay();
  await plain.until(/joined plant[\s\S]*joined plant/, 60_000);
  t.equal(plain.text().split('joined plant').length, before + 1, 'the relay is back: it joins again, with no password given twice (the relay holds its ticket)');
  t.equal(plainProc.exitCode, null, 'and never exited');
});
