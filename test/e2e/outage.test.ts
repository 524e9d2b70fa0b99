/**
 * Fault injection (issue 18) against a Mosquitto this test starts on a spare
 * port, `kagi up --broker` on it, and real `kagi agent` processes: term-a
 * listens and tunnels to term-b, which connects streams to an echo server.
 *  - kill -9 of the broker and a restart on the same port (no persistence:
 *    sessions and retained messages are gone): both agents keep running,
 *    are back in the VPN, a connection held across the outage goes on and a
 *    new one echoes;
 *  - the broker down when an agent starts: it waits, saying for which
 *    broker, and joins once the broker is back;
 *  - the tunnelling agent evicted (frozen past its polls): its connection
 *    is reset cleanly, it rejoins, a new connection echoes.
 * No agent may print the last-line-of-defence line (cli/agent-life.ts).
 */
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { kagiSpawn, kagiUp, stopChild, watch } from '../helpers/cli.js';
import { crypto, tempDir, until } from '../helpers/control-plane.js';
import { freePort } from '../helpers/ports.js';
import { deadline } from '../helpers/deadline.js';
import { haveMosquittoBinary, MOSQUITTO_BINARY_SKIP, startMosquitto } from '../helpers/mosquitto.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { loadServiceKeys } from '../../servers/identity.js';
import { addDevice, addUser, addVpn, grant } from '../../servers/admin.js';
import { UNHANDLED } from '../../cli/agent-life.js';

if (!haveMosquittoBinary) console.error(`\n*** ${MOSQUITTO_BINARY_SKIP} ***\n`);
const skip = haveMosquittoBinary ? false : MOSQUITTO_BINARY_SKIP;



/** An echo server (the service term-b's streams reach). */
async function echoServer(t: Test): Promise<number> {
  const s = createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => s.close());
  return (s.address() as AddressInfo).port;
}

/** A site on its own Mosquitto: data dir with term-a/alice and term-b/bob in VPN plant (→ the echo server). */
async function site(t: Test, extraUp: string[] = []) {
  const dir = tempDir(t);
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  let broker = (await startMosquitto(port))!;
  t.teardown(() => broker.kill('SIGKILL'));
  const echo = await echoServer(t);
  const store = new SqliteStore(dir);
  const files: Record<string, string> = {};
  for (const [i, id] of ['term-a', 'term-b'].entries()) {
    files[id] = join(dir, `${id}.json`);
    writeFileSync(files[id], JSON.stringify(await addDevice(store, loadServiceKeys(dir, crypto), crypto, { id, mac: `02:00:00:00:18:0${i + 1}`, kind: 'terminal', broker: url })));
  }
  await addVpn(store, { id: 'plant', protocol: 'tcp', port: echo });
  for (const u of ['alice', 'bob']) {
    await addUser(store, u, `${u}-password`);
    await grant(store, 'plant', u);
  }
  await store.close();
  const up = await kagiUp(['--broker', url, '--data', dir, ...extraUp]);
  t.teardown(() => stopChild(up));
  return {
    dir,
    url,
    up,
    async killBroker() {
      const gone = new Promise((r) => broker.once('exit', r));
      broker.kill('SIGKILL');
      await gone;
    },
    async restartBroker() {
      broker = (await startMosquitto(port))!;
    },
    /** `kagi agent` for term-a (listening, tunnel to term-b) or term-b (echo target by the VPN's port). */
    agent(id: 'term-a' | 'term-b', args: string[] = []) {
      const user = id === 'term-a' ? 'alice' : 'bob';
      const listen = id === 'term-a' ? ['--listen', 'plant=0:term-b'] : [];
      const child = kagiSpawn(['agent', files[id]!, '--no-broker-auth', '--user', user, '--password-stdin', ...listen, ...args]);
      child.stdin!.end(`${user}-password\n`);
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      t.teardown(() => stopChild(child));
      return Object.assign(watch(child), { child, stderr: () => stderr });
    },
  };
}

/** One connection through the tunnel: sends `bytes`, resolves with what came back when the far end closed. */
function roundTrip(port: number, bytes: Buffer, ms: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => s.end(bytes));
    const parts: Buffer[] = [];
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`no echo within ${ms} ms`))), ms);
    s.on('data', (d) => parts.push(d));
    s.on('end', () => (clearTimeout(timer), resolve(Buffer.concat(parts))));
    s.on('error', (e) => (clearTimeout(timer), reject(e)));
  });
}

/** New connections until one echoes `bytes` intact (the agents may still be reconnecting or rejoining). */
async function echoes(port: number, bytes: Buffer, deadlineMs = 60_000): Promise<boolean> {
  const end = Date.now() + deadline(deadlineMs);
  while (Date.now() < end) {
    try {
      if ((await roundTrip(port, bytes, 10_000)).equals(bytes)) return true;
    } catch {
      // reset while the tunnel is down: try a new connection
    }
  }
  return false;
}

/** A connection kept open: write a line, read it back. */
function openConnection(port: number) {
  const s: Socket = createConnection({ host: '127.0.0.1', port, allowHalfOpen: true });
  let got = '';
  let closed = false;
  let ended = false;
  s.on('data', (d) => (got += d));
  s.on('end', () => (ended = true));
  s.on('close', () => (closed = true));
  s.on('error', () => {});
  return {
    s,
    get got() {
      return got;
    },
    get closed() {
      return closed;
    },
    get ended() {
      return ended;
    },
  };
}

function running(t: Test, name: string, c: ChildProcess, stderr: string) {
  t.equal(c.exitCode, null, `${name} is still running`);
  t.notMatch(stderr, UNHANDLED, `${name} printed no unhandled rejection`);
}

/** Wait until the agent has joined and listens; its listening port. */
async function joinedAndListening(a: { until(re: RegExp, ms?: number): Promise<string> }): Promise<number> {
  await a.until(/joined plant/, 60_000);
  return Number(/listening on 127\.0\.0\.1:(\d+)/.exec(await a.until(/listening on 127\.0\.0\.1:\d+/))![1]);
}

t.test('kill -9 of the broker and a restart: both agents stay, the tunnel carries again', { skip }, async (t) => {
  const s = await site(t);
  const a = s.agent('term-a');
  const b = s.agent('term-b');
  const port = await joinedAndListening(a);
  await b.until(/joined plant/, 60_000);
  t.ok(await echoes(port, Buffer.from('before the outage')), 'the tunnel echoes before the outage');
  const [held, ended, reset] = [openConnection(port), openConnection(port), openConnection(port)];
  for (const c of [held, ended, reset]) c.s.write('one\n');
  t.ok(await until(() => [held, ended, reset].every((c) => c.got === 'one\n'), 10_000), 'connections carry traffic');

  await s.killBroker();
  // While the broker is away: data is held in the stream's window; a FIN
  // and an RST from the local side must not crash the agent (they did).
  held.s.write('two\n');
  ended.s.end();
  reset.s.resetAndDestroy();
  await s.restartBroker();

  t.ok(await echoes(port, Buffer.from('after the outage'.repeat(100))), 'a new connection through the tunnel echoes once the broker is back');
  t.ok(await until(() => held.got === 'one\ntwo\n', 30_000), `the connection held across the outage goes on (got ${JSON.stringify(held.got)})`);
  t.notOk(held.closed, 'and was not reset');
  t.ok(await until(() => ended.closed, 30_000), 'a FIN sent during the outage got through once the broker was back (the far end closed too)');
  held.s.destroy();
  running(t, 'term-a', a.child, a.stderr());
  running(t, 'term-b', b.child, b.stderr());
});

t.test('an agent started while the broker is down waits for it, then joins', { skip }, async (t) => {
  const s = await site(t);
  const b = s.agent('term-b');
  await b.until(/joined plant/, 60_000);
  await s.killBroker();
  const a = s.agent('term-a');
  const waiting = new RegExp(`waiting for ${s.url.replace(/[.]/g, '\\.')}: .*attempt 3 in \\d+ ms`);
  await a.until(waiting, 30_000);
  t.pass('it says which broker it waits for, on each retry');
  await s.restartBroker();
  const port = await joinedAndListening(a);
  t.ok(await echoes(port, Buffer.from('started in an outage')), 'a new connection through the tunnel echoes');
  running(t, 'term-a', a.child, a.stderr());
  running(t, 'term-b', b.child, b.stderr());
});

t.test('the tunnelling agent evicted: its connection ends cleanly, it rejoins, the tunnel carries again', { skip }, async (t) => {
  const s = await site(t, ['--poll-interval', '300ms', '--evict-after', '3', '--continue-after', '700ms']);
  const up = watch(s.up);
  const a = s.agent('term-a');
  const b = s.agent('term-b');
  const port = await joinedAndListening(a);
  await b.until(/joined plant/, 60_000);
  const held = openConnection(port);
  held.s.write('ping\n');
  t.ok(await until(() => held.got === 'ping\n', 10_000), 'a connection carries traffic');

  a.child.kill('SIGSTOP');
  await up.until(/term-a evicted from plant/, 20_000);
  held.s.write('while frozen\n'); // waits in the frozen agent's socket buffer
  a.child.kill('SIGCONT');
  await a.until(/left plant \(evicted\)/, 20_000);
  const other = openConnection(port);
  other.s.end(); // a FIN through an agent that is out of the VPN must not crash it (it did)
  t.ok(await until(() => held.closed || held.ended, 10_000), 'its connection over the VPN is over at once (the keys are gone)');
  // Bytes and the RST arriving together (the agent echoes what was sent
  // while it was frozen, then loses the keys) reach us as an end of input:
  // libuv takes a POLLHUP after a partial read for EOF. A write tells a
  // reset from an orderly end: a reset socket refuses it; a FIN would not.
  if (!held.closed) held.s.write('after the keys are gone\n');
  t.ok(await until(() => held.closed, 10_000), 'it was reset, not ended: it takes no more bytes');
  await a.until(/rejoined plant/, 60_000);
  t.ok(await echoes(port, Buffer.from('after the eviction')), 'a new connection through the tunnel echoes');
  running(t, 'term-a', a.child, a.stderr());
  running(t, 'term-b', b.child, b.stderr());
});
