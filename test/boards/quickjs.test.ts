/**
 * The quickjs-terminal bundle, exactly as built for boards, in a QuickJS VM
 * (quickjs-emscripten) behind the host bridge, against the embedded broker
 * and the real services: device auth and config, join, keys, and VPN
 * frames with a Node terminal both ways. The VM's heap is measured through
 * the join and held to the profile's RAM budget.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlPlane, crypto, joinedAgent, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { addDevice } from '../../servers/admin.js';
import { buildBundle } from '../../cli/bundle/build.js';
import { loadProfile } from '../../runtime/node/board-profiles.js';
import { QuickJsBoard } from '../../runtime/quickjs/board-host.js';

const dec = new TextDecoder();
const enc = new TextEncoder();

t.test('a QuickJS board joins through the host bridge and talks to a Node terminal both ways', async (t) => {
  const profile = loadProfile('quickjs-terminal');
  const out = tempDir(t);
  const built = await buildBundle(profile, { outRoot: out });
  const code = readFileSync(join(out, 'quickjs-terminal', 'agent.js'), 'utf8');
  t.equal(built.bytes, Buffer.byteLength(code), 'the bundle on disk is the one measured');

  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const atNode: string[] = [];
  const node = await joinedAgent(t, cp, 'term-n', 'bob', { onData: (_v, from, p) => atNode.push(`${from}:${dec.decode(p)}`) });

  const board = await QuickJsBoard.load(code, { brokerUrl: cp.brokerUrl, memoryLimit: profile.budget.ramBytes });
  t.teardown(() => board.dispose());
  // Provisioned into the board's storage, not baked: one image for many devices.
  const file = await addDevice(cp.store, cp.keys, crypto, { id: 'board-1', mac: '02:00:00:00:0b:01', kind: 'terminal', broker: cp.brokerUrl });
  board.storage.set('device', JSON.stringify(file));
  t.same(await board.run('kagiBoard.profile.name'), 'quickjs-terminal', 'the profile is baked into the bundle');

  const id = await board.run(`kagiBoard.start({ timeoutMs: 8000, onData: (v, f, p) => (globalThis.got ||= []).push(v + ':' + f + ':' + __text(p)) }).then((a) => (globalThis.agent = a, a.id))`);
  t.equal(id, 'board-1', 'the agent started with the device file from storage (connected with a kagi CONNECT password)');
  board.resetPeak();
  const before = board.heap();
  const t0 = Date.now();
  const cfg = (await board.run(`agent.configure()`)) as Record<string, unknown>;
  t.equal(cfg.deviceId, 'board-1', 'device auth and config (S101–S104) from inside QuickJS');
  const vpns = await board.run(`agent.join('alice', 'alice-password').then((v) => v.map((x) => x.id + '#' + x.epoch))`);
  const joinMs = Date.now() - t0;
  t.same(vpns, ['plant#1'], 'joined plant and holds its key (S105–S110)');
  t.equal(await board.run('agent.state()'), 'joined', 'state joined');
  const peak = board.peakHeap;
  t.ok(peak < profile.budget.ramBytes, `heap peak through the join within the RAM budget (${peak} of ${profile.budget.ramBytes} bytes)`);
  // XS keeps code in flash (preloaded); what must fit its 64 KB is what the join allocates.
  const xs = loadProfile('xs-terminal');
  t.ok(peak - before < xs.budget.ramBytes, `the join's working set above idle (${peak - before} B) fits the XS-class RAM budget (${xs.budget.ramBytes} B)`);
  t.comment(`QuickJS: heap ${before} B before configure, peak ${peak} B through the join; configure + join ${joinMs} ms`);

  await board.run(`agent.send('plant', 'term-n', __bytes('hello from quickjs'))`);
  t.ok(await until(() => atNode.includes('board-1:hello from quickjs')), 'QuickJS board → Node terminal, opened intact');
  await node.send('plant', 'board-1', enc.encode('hello from node'));
  t.ok(await until(async () => ((await board.run('globalThis.got || []')) as string[]).includes('plant:term-n:hello from node')), 'Node terminal → QuickJS board, opened intact');

  const row = (await cp.store.members('plant')).find((m) => m.deviceId === 'board-1');
  t.match(row, { userId: 'alice', keyId: 1 }, 'VPN table: the board is a member at key id 1');
  t.ok([...board.storage.keys()].some((k) => k.startsWith('n:')), 'its counters are in the board\'s key-value storage');
  t.notOk(board.lines.some((l) => l.startsWith('error:')), `no error inside the VM (${board.lines.filter((l) => l.startsWith('error:')).join('; ')})`);
  await board.run('agent.stop()');
  t.ok(await until(async () => !(await cp.store.members('plant')).some((m) => m.deviceId === 'board-1')), 'stopping leaves the VPN (explicit leave from the board)');
});
