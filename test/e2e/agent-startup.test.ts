/**
 * `kagi agent` on its first day (issue 17, and issue 18's first connection):
 *  - a --listen port in use fails before the agent connects or joins, naming it;
 *  - a relay port in use names the port and --port-base;
 *  - no broker: it waits, naming the broker on each retry; --broker-wait bounds it;
 *    SIGTERM while waiting stops it cleanly;
 *  - a broker with no control plane: each silent attempt names the broker,
 *    whether it connected, and what to check; the agent keeps trying;
 *  - SIGTERM of a joined agent still leaves its VPN and exits 0;
 *  - a second agent on the same device file is refused, naming the first.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { kagiAsync, kagiSpawn, watch } from '../helpers/cli.js';
import { controlPlane, crypto, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { freePort } from '../helpers/ports.js';
import { haveMosquittoBinary, MOSQUITTO_BINARY_SKIP, startMosquitto } from '../helpers/mosquitto.js';
import { addDevice } from '../../servers/admin.js';
import type { ControlPlane } from '../../servers/control-plane.js';

async function busyPort(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const s: Server = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => s.close());
  return (s.address() as AddressInfo).port;
}

async function deviceFile(dir: string, cp: ControlPlane, id: string, kind: 'terminal' | 'relay', broker = cp.brokerUrl): Promise<string> {
  const file = join(dir, `${id}.json`);
  writeFileSync(file, JSON.stringify(await addDevice(cp.store, cp.keys, crypto, { id, mac: `02:00:00:00:17:${id.length.toString(16).padStart(2, '0')}`, kind, broker })));
  return file;
}

/** Resolves with the exit code (or signal) of a child. */
const exited = (c: ReturnType<typeof kagiSpawn>) => new Promise<number | string>((r) => c.once('exit', (code, sig) => r(code ?? sig!)));

t.test('a --listen port in use fails before joining, naming the port', async (t) => {
  const dir = tempDir(t);
  const cp = await controlPlane(dir);
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const file = await deviceFile(dir, cp, 'term-l', 'terminal');
  const port = await busyPort(t);
  const r = await kagiAsync(['agent', file, '--user', 'alice', '--password-stdin', '--listen', `plant=${port}:term-x`], 'alice-password\n');
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, `--listen plant=${port}:term-x: 127.0.0.1:${port} is already in use`, 'the error names the flag and the port');
  t.notMatch(r.stdout, /state: /, 'it never started the agent');
  t.same(await cp.store.members('plant'), [], 'nothing joined');
});

t.test('a relay port in use names the port and --port-base', async (t) => {
  const dir = tempDir(t);
  const cp = await controlPlane(dir);
  t.teardown(() => cp.close());
  const file = await deviceFile(dir, cp, 'relay-p', 'relay');
  const port = await busyPort(t);
  const r = await kagiAsync(['agent', file, '--profile', 'node-relay-4port', '--port-base', String(port)]);
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, `relay port p1: 127.0.0.1:${port} is already in use; move the relay's ports with --port-base N`, 'the error names the port and --port-base');
  t.notMatch(r.stdout, /configured/, 'it never configured');
});

t.test('no broker: it waits, naming the broker; SIGTERM stops it; --broker-wait bounds it', async (t) => {
  const dir = tempDir(t);
  const cp = await controlPlane(dir);
  t.teardown(() => cp.close());
  const nobody = `mqtt://127.0.0.1:${await freePort()}`;
  const file = await deviceFile(dir, cp, 'term-w', 'terminal', nobody);
  const a = kagiSpawn(['agent', file]);
  t.teardown(() => void a.kill('SIGKILL'));
  const gone = exited(a);
  const out = await watch(a).until(/attempt 3 in \d+ ms/, 30_000);
  t.match(out, `waiting for ${nobody}: `, 'each retry names the broker it waits for');
  a.kill('SIGTERM');
  t.equal(await gone, 0, 'SIGTERM while waiting: exit 0');

  const r = await kagiAsync(['agent', file, '--broker-wait', '2s']);
  t.equal(r.code, 1, '--broker-wait: gives up with exit 1');
  t.match(r.stderr, `gave up waiting for ${nobody} after`, 'and says for which broker');
});

t.test('a broker without a control plane: each silent attempt says what to check; the agent keeps trying', { skip: haveMosquittoBinary ? false : MOSQUITTO_BINARY_SKIP }, async (t) => {
  const dir = tempDir(t);
  const cp = await controlPlane(dir);
  t.teardown(() => cp.close());
  const port = await freePort();
  const mosquitto = (await startMosquitto(port))!;
  t.teardown(() => mosquitto.kill('SIGKILL'));
  const url = `mqtt://127.0.0.1:${port}`;
  const file = await deviceFile(dir, cp, 'term-s', 'terminal', url);
  const a = kagiSpawn(['agent', file, '--no-broker-auth']);
  t.teardown(() => void a.kill('SIGKILL'));
  const gone = exited(a);
  // Every 10 s wait that runs out says so; the same request goes again
  // while it is valid (decision 130), then a new one (attempt 2).
  const out = await watch(a).until(/attempt 2\b/, 90_000);
  const hint = `via ${url} (connected: yes) — is kagi up serving this broker? pass --broker URL if it runs elsewhere`;
  const silent = out.split('\n').filter((l) => /no reply from config to config\.request within \d+ ms/.test(l) && l.includes(hint));
  t.equal(silent.length, 3, 'each silent wait says which broker, that it connected, and what to check');
  t.equal(silent.filter((l) => l.endsWith('sending it again')).length, 2, 'twice the same request again, then a new one');
  t.equal(a.exitCode, null, 'and it is still trying');
  a.kill('SIGTERM');
  t.equal(await gone, 0, 'SIGTERM: exit 0');
});

t.test('SIGTERM of a joined agent leaves its VPN and exits 0', async (t) => {
  const dir = tempDir(t);
  const cp = await controlPlane(dir);
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const file = await deviceFile(dir, cp, 'term-q', 'terminal');
  const a = kagiSpawn(['agent', file, '--user', 'alice', '--password-stdin']);
  t.teardown(() => void a.kill('SIGKILL'));
  a.stdin!.end('alice-password\n');
  const gone = exited(a);
  await watch(a).until(/joined plant/, 30_000);
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-q'], 'joined');
  a.kill('SIGTERM');
  t.equal(await gone, 0, 'exit 0');
  t.ok(await until(async () => (await cp.store.members('plant')).length === 0, 5000), 'it left: the VPN has no members');
});

t.test('one agent per device file: a second is refused naming the first, which stays joined; a killed one frees the file', async (t) => {
  const dir = tempDir(t);
  const cp = await controlPlane(dir);
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const file = await deviceFile(dir, cp, 'term-one', 'terminal');
  const first = kagiSpawn(['agent', file, '--user', 'alice', '--password-stdin']);
  t.teardown(() => void first.kill('SIGKILL'));
  first.stdin!.end('alice-password\n');
  const firstOut = watch(first);
  await firstOut.until(/joined plant/, 30_000);
  const epoch = async () => (await cp.store.currentSessionKey('plant'))?.epoch;
  const joinedAt = await epoch();

  const twin = await kagiAsync(['agent', file, '--user', 'alice', '--password-stdin'], 'alice-password\n');
  t.equal(twin.code, 1, 'a second agent on the same file exits 1');
  t.match(twin.stderr, new RegExp(`term-one\\.json is already run by the agent of pid ${first.pid} on .*, since \\d{4}-\\d\\d-\\d\\dT.*Stop that agent first`), 'naming the agent that holds it, and what to do');
  t.notMatch(twin.stdout, /state: /, 'it never started: no connection, no state file touched');
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-one'], 'the first is still the one member');
  t.equal(await epoch(), joinedAt, 'and nothing was rekeyed: the twin never joined or left');
  t.notMatch(firstOut.text(), /left plant|state: stopped/, 'the first agent saw nothing of it');

  const gone = exited(first);
  first.kill('SIGKILL');
  await gone;
  const next = kagiSpawn(['agent', file, '--user', 'alice']);
  t.teardown(() => void next.kill('SIGKILL'));
  await watch(next).until(/joined plant/, 30_000);
  t.pass('after a kill -9 of the first, the next agent on the file starts (on the ticket the first kept) and joins');
});
