/**
 * Embodiment 4 and the key lifecycle, in one process on the real embedded
 * broker: polls and continue (S401–S403), eviction (leave steps, S404–S405),
 * leave on shutdown, periodic rekey of communicating members only, fetching
 * a missed epoch, and traffic across a rekey.
 *
 * Network faults are real lost messages: the agent's link drops what the
 * test says (lose), everything else is the real thing.
 */
import t from 'tap';
import { agent, controlPlane, device, joinedAgent, logged, settles, tempDir, typeOf, until, vpnWithUsers } from '../helpers/control-plane.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const FAST = { pollIntervalMs: 200, evictAfter: 3, continueAfterMs: 450 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a member whose polls are lost sends continue and stays; one whose answers are lost is evicted', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { liveness: FAST, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' });
  const left: string[] = [];
  const states: string[] = [];
  const got: string[] = [];
  // a: no poll ever reaches it (S403 is its only way to be seen).
  const a = await joinedAgent(t, cp, 'term-a', 'alice', {
    lose: (dir, _t, b) => dir === 'in' && typeOf(b) === 'poll',
    onData: (_v, from, p) => got.push(`${from}:${dec.decode(p)}`),
  });
  // b: polls arrive, but nothing it sends to the services gets through.
  let muteB = false;
  const b = await joinedAgent(t, cp, 'term-b', 'bob', {
    lose: (dir, topic) => muteB && dir === 'out' && topic.includes('/svc/'),
    onLeft: (vpn, reason) => left.push(`${vpn}:${reason}`),
    onState: (s) => states.push(s),
  });
  const c = await joinedAgent(t, cp, 'term-c', 'carol');
  const before = (await cp.store.currentSessionKey('plant'))!.epoch;
  muteB = true;

  t.ok(await until(() => logged(lines, /evicted from plant/).length > 0, 4000), 'b is evicted after its missed polls');
  t.match(logged(lines, /term-b evicted from plant/)[0], /3 polls missed/, 'after exactly evictAfter polls');
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-a', 'term-c'], 'VPN table: a and c remain');
  // The network devices follow the eviction in the reconcile after it, which
  // starts after the log line (and may wait its spacing): wait for it.
  t.ok(await settles(() => cp.acl.snapshot(), { plant: ['term-a', 'term-c'] }), 'broker ACL no longer admits b');
  t.same(cp.memory.members('plant'), ['term-a', 'term-c'], 'firewall (memory driver) no longer admits b, in the same reconcile');
  t.ok(await until(() => left.includes('plant:evicted')), 'b is told it was evicted (S405)');
  t.equal(b.state, 'configured', 'b is back to configured: it must join again');
  t.same(states.slice(-1), ['configured'], 'state change reported');
  t.ok(await until(() => a.epochs().plant! > before && c.epochs().plant! > before), 'a and c are rekeyed at once (S404)');

  await sleep(FAST.pollIntervalMs * 6);
  t.ok(logged(lines, /continue from term-a/).length >= 2, 'a, never polled, keeps sending continue');
  t.equal(logged(lines, /term-a evicted/).length, 0, 'a is never evicted');
  t.equal(a.state, 'joined', 'a is still joined');

  await c.send('plant', 'term-a', enc.encode('still here'));
  t.ok(await until(() => got.includes('term-c:still here')), 'a and c still talk');
});

t.test('evict-after 2 with the default continue-after: a member never polled sends continue in time and stays', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { liveness: { pollIntervalMs: 200, evictAfter: 2 }, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const a = await joinedAgent(t, cp, 'term-a', 'alice', { lose: (dir, _t, b) => dir === 'in' && typeOf(b) === 'poll' });
  t.ok(await until(() => logged(lines, /continue from term-a/).length >= 6, 5000), 'never polled, it sends continue');
  t.same(logged(lines, /term-a evicted/), [], 'in time: it is never evicted');
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-a'], 'it stays in the VPN');
  t.equal(a.state, 'joined', 'and stays joined');
});

t.test('an agent that stops leaves at once: table, ACL and keys follow without waiting for polls', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { liveness: { pollIntervalMs: 10_000, evictAfter: 3 }, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' });
  const a = await joinedAgent(t, cp, 'term-a', 'alice');
  const b = await joinedAgent(t, cp, 'term-b', 'bob');
  const c = await joinedAgent(t, cp, 'term-c', 'carol');
  const started = Date.now();
  await c.stop();
  t.equal(c.state, 'stopped', 'c stopped');
  t.ok(await until(() => a.epochs().plant === 2 && b.epochs().plant === 2), 'a and b move to epoch 2');
  t.ok(Date.now() - started < 5000, 'well before the first poll would have noticed');
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-a', 'term-b'], 'VPN table without c');
  t.same(cp.acl.snapshot(), { plant: ['term-a', 'term-b'] }, 'broker ACL without c');
  t.ok(logged(lines, /term-c left plant \(term-c is shutting down\)/).length === 1, 'the leave is logged once');
  t.equal(logged(lines, /told term-c/).length, 0, 'nobody tells the leaver: it is gone');
});

t.test('a MISSING member that joined again through another instance does not pay for its old misses', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { liveness: { pollIntervalMs: 200, evictAfter: 2, continueAfterMs: 300 }, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { bob: 'bob-password' });
  let muteB = false;
  await joinedAgent(t, cp, 'term-b', 'bob', { lose: (dir, topic) => muteB && dir === 'out' && topic.includes('/svc/') });
  muteB = true;
  t.ok(await until(() => logged(lines, /term-b missed a poll \(1\/2\)/).length > 0, 4000), 'b misses one poll of two');
  t.ok((await cp.store.notCommunicating()).has('term-b'), 'and is marked not communicating');
  // What another config instance's join writes to the shared store; this
  // instance, the lease holder, hears nothing else of it.
  await cp.store.setCommunicating('term-b', true, Date.now());
  t.ok(await until(() => logged(lines, /term-b joined again through another instance/).length > 0, 2000), 'the next round sees the rejoin');
  muteB = false;
  await sleep(200 * 5);
  t.equal(logged(lines, /term-b evicted/).length, 0, 'the miss from before the join does not evict it');
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-b'], 'b is still in the VPN');
});

t.test('periodic rekey reaches only communicating members; a silent one catches up when it answers again', async (t) => {
  const lines: string[] = [];
  // No periodic rekey until c is silent: on a loaded machine the three joins
  // can outlast a period, and a rekey before c falls silent reaches c too.
  const cp = await controlPlane(tempDir(t), { liveness: { pollIntervalMs: 200, evictAfter: 100, continueAfterMs: 1000 }, rekeyPeriodMs: 0, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' });
  const a = await joinedAgent(t, cp, 'term-a', 'alice');
  const b = await joinedAgent(t, cp, 'term-b', 'bob');
  let silent = false;
  // c hears everything but says nothing to the services: not communicating.
  const c = await joinedAgent(t, cp, 'term-c', 'carol', { lose: (dir, topic) => silent && dir === 'out' && topic.includes('/svc/') });
  silent = true;
  t.ok(await until(() => logged(lines, /term-c missed a poll/).length > 0), 'c is marked not communicating');
  t.ok(await until(async () => (await cp.store.notCommunicating()).has('term-c')), 'and the table says so');
  await cp.store.updateVpn('plant', { rekeyPeriodMs: 1500 }); // as `kagi vpn set plant --rekey-period 1.5s` does
  if (!t.ok(await until(() => a.epochs().plant! >= 3 && b.epochs().plant! >= 3, 6000), 'two periodic rekeys reach a and b')) console.error(lines.join('\n'));
  t.ok(logged(lines, /rekeying plant to epoch 2 \(periodic\) for 2 communicating members/).length === 1, 'the key server sent epoch 2 to two members');
  t.equal(c.epochs().plant, 1, 'c (whose inbound works) was never sent a new epoch');
  // The agent holds the epoch before its keys.updated reaches the table: wait for the write.
  let keyIds: Record<string, number> = {};
  const acked = await until(async () => {
    keyIds = Object.fromEntries((await cp.store.members('plant')).map((m) => [m.deviceId, m.keyId]));
    return keyIds['term-a']! >= 3 && keyIds['term-b']! >= 3;
  });
  t.ok(acked, 'VPN table: a and b at the new key id (acknowledged)');
  t.equal(keyIds['term-c'], 1, 'VPN table: c still at key id 1');

  silent = false;
  const current = async () => (await cp.store.currentSessionKey('plant'))!.epoch;
  const caught = await until(async () => c.epochs().plant === (await current()), 5000);
  t.ok(caught, 'c answers again and reaches the current epoch');
  t.ok(logged(lines, /term-c answers again/).length > 0, 'c is communicating again');
});

t.test('traffic across a rekey: no frame lost or rejected because of the switch', async (t) => {
  const cp = await controlPlane(tempDir(t), { rekeyPeriodMs: 0 });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const got: string[] = [];
  const a = await joinedAgent(t, cp, 'term-a', 'alice');
  const b = await joinedAgent(t, cp, 'term-b', 'bob', { onData: (_v, _f, p) => got.push(dec.decode(p)) });
  let n = 0;
  let switchedAt = -1;
  const send = async () => {
    await a.send('plant', 'term-b', enc.encode(`frame ${n++}`));
    await sleep(2);
  };
  for (let i = 0; i < 100; i++) await send();
  await cp.store.setRekeyRequest('plant', Date.now()); // as `kagi vpn rekey plant` does
  while (switchedAt < 0 && n < 5000) {
    await send();
    if (a.epochs().plant === 2) switchedAt = n;
  }
  for (let i = 0; i < 100; i++) await send();
  t.ok(switchedAt > 0, `the sender switched to epoch 2 at frame ${switchedAt}`);
  t.ok(await until(() => got.length === n, 5000), `all ${n} frames arrived`);
  t.same(got, Array.from({ length: n }, (_, i) => `frame ${i}`), 'in order, none missing');
  t.same(Object.fromEntries(b.droppedFrames), {}, 'the receiver dropped nothing');
  t.equal(b.epochs().plant, 2, 'the receiver is at epoch 2');
});

t.test('a member coming back after a power loss: its config request counts as an answer, so the polls it missed do not evict it on the way back', async (t) => {
  const lines: string[] = [];
  // Eviction after 20 polls (4 s down): room for the agent's start and config request on a busy machine.
  const cp = await controlPlane(tempDir(t), { liveness: { pollIntervalMs: 200, evictAfter: 20, continueAfterMs: 450 }, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const bundle = await device(cp, 'term-p');
  const first = agent(bundle, cp.brokerUrl);
  await first.start();
  await first.configure();
  await first.join('alice', 'alice-password');
  await first.stop({ leave: false }); // the power goes: no leave, its keys and channels gone with it

  t.ok(await until(() => logged(lines, /term-p missed a poll \(3\/20\)/).length > 0, 8000), 'down, it misses polls: 3 of the 20 that evict');
  const back = agent(bundle, cp.brokerUrl);
  t.teardown(() => back.stop({ leave: false }));
  await back.start();
  await back.configure();
  t.ok(await until(() => logged(lines, /term-p answers again: communicating/).length > 0, 4000), 'its config request is an answer: communicating again, the count starts over');
  t.equal(logged(lines, /term-p evicted/).length, 0, 'not evicted on its way back');
  await back.join('alice', 'alice-password');
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-p'], 'and it is back in its VPN, never having left it');
  t.equal(logged(lines, /term-p evicted/).length, 0, 'nobody was evicted');
});
