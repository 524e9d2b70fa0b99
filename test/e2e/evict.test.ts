/**
 * Eviction of frozen members (patent S401–S405): real `kagi agent`
 * processes stopped with SIGSTOP, a live control plane polling them.
 *  - a frozen terminal is evicted after N polls: VPN table, broker ACL and
 *    firewall no longer admit it, frames sealed after the eviction do not
 *    open with any key it held; thawed, it is told and joins again.
 *  - a frozen plaintext terminal behind a live relay: the relay stops
 *    vouching for it, it is evicted, and its relay port is RESTRICTED.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kagiSpawn, watch } from '../helpers/cli.js';
import { controlPlane, crypto, device, joinedAgent, logged, settles, tempDir, testPlatform, until, vpnWithUsers } from '../helpers/control-plane.js';
import { addDevice } from '../../servers/admin.js';
import { FrameReceiver } from '../../protocol/vpn-frame.js';
import { KagiError } from '../../protocol/errors.js';
import { RelayAgent } from '../../device/relay.js';
import { TcpRelayPorts } from '../../runtime/node/relay-ports.js';
import { deadline } from '../helpers/deadline.js';

const enc = new TextEncoder();
// Short intervals keep the test quick; scaled on a busy machine, where a
// stalled process would otherwise miss a 300 ms poll for real.
const LIVENESS = { pollIntervalMs: deadline(300), evictAfter: 3, continueAfterMs: deadline(700) };

t.test('a frozen terminal is evicted after N polls and must join again', async (t) => {
  const dir = tempDir(t);
  const lines: string[] = [];
  const cp = await controlPlane(dir, { liveness: LIVENESS, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', frank: 'frank-password' });
  const a = await joinedAgent(t, cp, 'term-a', 'alice');

  const file = join(dir, 'frank.json');
  writeFileSync(file, JSON.stringify(await addDevice(cp.store, cp.keys, crypto, { id: 'term-f', mac: '02:00:00:00:0f:01', kind: 'terminal', broker: cp.brokerUrl })));
  const f = kagiSpawn(['agent', file, '--user', 'frank', '--password-stdin']);
  t.teardown(() => void f.kill('SIGKILL'));
  f.stdin!.end('frank-password\n');
  const out = watch(f);
  await out.until(/joined plant/);
  const held = (await cp.store.currentSessionKey('plant'))!; // every key frank holds

  f.kill('SIGSTOP');
  t.ok(await until(() => logged(lines, /term-f evicted from plant \(3 polls missed\)/).length === 1, 6000), 'evicted after 3 missed polls');
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-a'], 'VPN table: frank is out');
  // The network devices follow in the reconcile after the log line.
  t.ok(await settles(() => cp.acl.snapshot(), { plant: ['term-a'] }), 'broker ACL no longer admits it');
  t.same(cp.memory.members('plant'), ['term-a'], 'firewall no longer admits it, in the same reconcile');
  t.ok(await until(() => a.epochs().plant! > held.epoch), 'the VPN is rekeyed for the rest');

  const frame = a.vpns.get('plant')!.keys.seal(enc.encode('after the eviction'), 'all');
  const frozenView = new FrameReceiver(crypto, 'plant', 60_000);
  frozenView.setKey(held.epoch, held.key, Date.now());
  t.throws(() => frozenView.open(frame, Date.now(), 'all'), KagiError, 'a frame sealed after the eviction does not open with the key it held');

  f.kill('SIGCONT');
  await out.until(/left plant \(evicted\)/);
  t.pass('thawed, it learns it was evicted');
  await out.until(/rejoined plant/, 20_000);
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-a', 'term-f'], 'it joined again, as a new member');
});

t.test('a frozen plaintext terminal behind a live relay is evicted and its port RESTRICTED', async (t) => {
  const dir = tempDir(t);
  const lines: string[] = [];
  const cp = await controlPlane(dir, { liveness: LIVENESS, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', pam: 'pam-password' });
  await joinedAgent(t, cp, 'term-a', 'alice');

  const relay = new RelayAgent(await device(cp, 'relay-1', 'relay'), ['p1'], testPlatform(cp.brokerUrl), { timeoutMs: 3000, attempts: 2 });
  const ports = new TcpRelayPorts(relay, [{ name: 'p1', kind: 'tcp', host: '127.0.0.1', port: 0 }]);
  t.teardown(async () => {
    await ports.stop();
    await relay.stop({ leave: false });
  });
  await relay.start();
  const bound = await ports.start();

  const file = join(dir, 'pam.json');
  writeFileSync(file, JSON.stringify(await addDevice(cp.store, cp.keys, crypto, { id: 'plain-1', mac: '02:00:00:00:0f:02', kind: 'plaintext', broker: cp.brokerUrl, relay: 'relay-1', port: 'p1' })));
  const p = kagiSpawn(['agent', file, '--via', `127.0.0.1:${bound.p1}`, '--user', 'pam', '--password-stdin']);
  t.teardown(() => void p.kill('SIGKILL'));
  p.stdin!.end('pam-password\n');
  await watch(p).until(/joined plant/);
  t.equal(relay.status()[0]!.state, 'FORWARDING', 'the port forwards');
  await new Promise((r) => setTimeout(r, LIVENESS.pollIntervalMs * 4));
  t.equal(logged(lines, /plain-1 missed a poll/).length, 0, 'while it answers the relay’s pings, it is not missing');

  p.kill('SIGSTOP');
  t.ok(await until(() => logged(lines, /plain-1 evicted from plant/).length === 1, 8000), 'evicted after missed polls');
  t.ok(await until(() => relay.status()[0]!.state === 'RESTRICTED'), 'its relay port is RESTRICTED (S405)');
  t.same(cp.acl.snapshot(), { plant: ['term-a'] }, 'the relay no longer carries it on the broker');
  t.equal(logged(lines, /relay-1 evicted/).length, 0, 'the relay itself stays');
});

t.test('a killed agent: the broker’s will is a fast extra signal, the polls still decide', async (t) => {
  const dir = tempDir(t);
  const lines: string[] = [];
  const cp = await controlPlane(dir, { liveness: { pollIntervalMs: 1000, evictAfter: 3, continueAfterMs: 2500 }, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', kim: 'kim-password' });
  await joinedAgent(t, cp, 'term-a', 'alice');
  const file = join(dir, 'kim.json');
  writeFileSync(file, JSON.stringify(await addDevice(cp.store, cp.keys, crypto, { id: 'term-k', mac: '02:00:00:00:0f:03', kind: 'terminal', broker: cp.brokerUrl })));
  const k = kagiSpawn(['agent', file, '--user', 'kim', '--password-stdin']);
  k.stdin!.end('kim-password\n');
  await watch(k).until(/joined plant/);
  k.kill('SIGKILL');
  t.ok(await until(() => logged(lines, /term-k went offline \(will\); polling it now/).length === 1, 5000), 'the will makes the config server poll at once');
  t.ok(await until(() => logged(lines, /term-k evicted from plant/).length === 1, 8000), 'and the missed polls evict it');
  t.ok(await settles(() => cp.acl.snapshot(), { plant: ['term-a'] }), 'closed to it');
});
