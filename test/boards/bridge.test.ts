/**
 * The board agent (device/board/main.ts) on Node, against the Node host
 * bridge and the real services: the same code as in a board bundle, here
 * so its link state machine is exercised directly, including a dropped
 * connection and reconnecting with a fresh CONNECT password.
 */
import t from 'tap';
import { controlPlane, crypto, joinedAgent, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { addDevice } from '../../servers/admin.js';
import { NodeHostBridge } from '../../runtime/node/host-bridge.js';
import type { BoardTerminal, BoardStartOptions } from '../../device/board/main.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
type Board = { profile: unknown; start(o?: BoardStartOptions): Promise<BoardTerminal> };

t.test('the board agent on the host bridge: join, frames both ways, a dropped link, leave', async (t) => {
  const g = globalThis as { kagiHost?: NodeHostBridge; kagiBoard?: Board };
  await t.rejects(import('../../device/board/main.js').then(() => g.kagiBoard!.start()), /globalThis\.kagiHost is not set/, 'no host bridge: a clear error');
  t.equal(g.kagiBoard!.profile, null, 'not built by the bundler: no baked profile');

  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const atNode: string[] = [];
  const node = await joinedAgent(t, cp, 'term-n', 'bob', { onData: (_v, f, p) => atNode.push(`${f}:${dec.decode(p)}`) });

  const host = new NodeHostBridge(cp.brokerUrl);
  g.kagiHost = host;
  t.teardown(() => (host.dispose(), delete g.kagiHost));
  await t.rejects(g.kagiBoard!.start(), /no device file \(bake one with kagi bundle --device, or store it under "device"\)/, 'no device file: says where one goes');

  const file = await addDevice(cp.store, cp.keys, crypto, { id: 'board-n', mac: '02:00:00:00:0d:01', kind: 'terminal', broker: cp.brokerUrl });
  // A board whose RNG hands over zeros, or the wrong type, refuses to start.
  const real = host.random.bind(host);
  host.random = (n) => new Uint8Array(n);
  await t.rejects(g.kagiBoard!.start({ device: file }), /random source failed its start-up test/, 'an all-zero RNG: the agent refuses to start');
  host.random = (n) => real(n).buffer as unknown as Uint8Array;
  await t.rejects(g.kagiBoard!.start({ device: file }), /random source returned ArrayBuffer, not a Uint8Array/, 'an RNG that returns an ArrayBuffer: refused too');
  host.random = real;
  const got: string[] = [];
  const agent = await g.kagiBoard!.start({ device: file, timeoutMs: 5000, onData: (_v, f, p) => got.push(`${f}:${dec.decode(p)}`) });
  t.equal(agent.id, 'board-n', 'started with the given device file');
  t.equal((await agent.configure()).deviceId, 'board-n', 'configured');
  t.same((await agent.join('alice', 'alice-password')).map((v) => v.id), ['plant'], 'joined');
  await agent.send('plant', 'term-n', enc.encode('one'));
  t.ok(await until(() => atNode.includes('board-n:one')), 'board → node');

  const before = host.lines.length;
  host.dropConnection();
  t.ok(await until(() => host.lines.slice(before).some((l) => /reconnecting in \d+ ms/.test(l))), 'the link notices and schedules a reconnect with backoff');
  // The embedded broker refuses a CONNECT counter it has seen: getting back in proves a fresh one.
  t.ok(await until(async () => {
    await agent.send('plant', 'term-n', enc.encode('two')).catch(() => {});
    return atNode.includes('board-n:two');
  }, 8000), 'back on the broker with a fresh CONNECT password; frames flow again');
  await node.send('plant', 'board-n', enc.encode('three'));
  t.ok(await until(() => got.includes('term-n:three')), 'node → board after the reconnect (resubscribed)');
  t.equal(agent.state(), 'joined', 'still joined');

  await agent.stop();
  t.ok(await until(async () => !(await cp.store.members('plant')).some((m) => m.deviceId === 'board-n')), 'stop leaves the VPN');
  t.equal(host.pendingTimers, 0, 'no timer left behind');
});
