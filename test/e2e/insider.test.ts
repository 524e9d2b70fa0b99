/**
 * Issue 23: one provisioned, hostile device (an insider) against everyone
 * else. Each finding of the adversarial run, reproduced:
 *   1. retained messages without limit on made-up service topics;
 *   2. amplification: a `continue` naming thousands of made-up VPNs made
 *      the config server seal a notice for each;
 *   3. a flood of garbage publishes slowed honest joins.
 * Each failed before its fix and passes after: finding 1 with the old
 * topic check (any op of a service, any retain flag, any size: the
 * made-up topic stays connected, nothing refused); finding 2 with the old
 * vouch (286 notices told within the test's wait, and counting); finding 3
 * without the quotas and the CBOR shape check (honest joins timed out:
 * "no reply from config to config.request within 6000 ms").
 */
import t from 'tap';
import type { MqttClient } from 'mqtt';
import { Readable } from 'node:stream';
import { agent, controlPlane, device, joinedAgent, logged, rawDevice, tempDir, typeOf, until, vpnWithUsers } from '../helpers/control-plane.js';
import { topics } from '../../protocol/topics.js';
import type { Bundle } from '../../device/bundle.js';
import type { ControlPlane } from '../../servers/control-plane.js';
import type { Peer } from '../../protocol/peer.js';
import { spawn } from 'node:child_process';
import { nodeArgs } from '../helpers/built.js';
import { toHex } from '../../protocol/bytes.js';


/** Retained messages the embedded broker holds under `pattern`. */
async function retained(cp: ControlPlane, pattern: string): Promise<number> {
  const p = (cp.broker!.aedes as unknown as { persistence: { createRetainedStreamCombi(p: string[]): Readable } }).persistence;
  let n = 0;
  for await (const _ of p.createRetainedStreamCombi([pattern])) n++;
  return n;
}

const closed = (c: MqttClient) => new Promise<void>((r) => (!c.connected ? r() : c.once('close', () => r())));

/** A QoS 1 publish that also ends when the broker closes the connection (mqtt.js would wait for its PUBACK forever). */
const publish = (c: MqttClient, topic: string, payload: Buffer, retain: boolean) =>
  Promise.race([c.publishAsync(topic, payload, { qos: 1, retain }).then(() => undefined, () => undefined), closed(c)]);

t.test('finding 1: retained messages only on a device\'s own state topic, and no made-up topics', async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  const b = await device(cp, 'insider');
  const sizeBefore = await retained(cp, 'kagi/#');

  // The run's attack: a retained 60 KB payload on made-up service topics.
  const c = await rawDevice(cp, b);
  t.teardown(() => c.end(true));
  const payload = Buffer.alloc(60_000, 7);
  for (let i = 0; i < 50 && c.connected; i++) await publish(c, topics.service('config', `x-${i}`), payload, true);
  await closed(c);
  t.notOk(c.connected, 'the broker closed the connection of a device publishing to a made-up topic');
  t.equal(await retained(cp, 'kagi/v1/svc/#'), 0, 'no retained message held under the service topics');
  t.ok((cp.broker!.publishes.refused.get('topic') ?? 0) >= 1, 'refused as a made-up topic, counted');
  t.ok(cp.metrics.value('kagi_broker_refused_total', { reason: 'topic' }) >= 1, 'and in /metrics');

  // A real op topic, but retained: refused too.
  const c2 = await rawDevice(cp, b);
  t.teardown(() => c2.end(true));
  await publish(c2, topics.service('config', 'request'), Buffer.from('x'), true);
  await closed(c2);
  t.equal(await retained(cp, 'kagi/v1/svc/#'), 0, 'a retained publish on a request topic is not held');
  t.ok((cp.broker!.publishes.refused.get('retain') ?? 0) >= 1, 'refused for its retain flag');

  // Its own state topic: retained is what the protocol does, within its size.
  const c3 = await rawDevice(cp, b);
  t.teardown(() => c3.end(true));
  await publish(c3, topics.state('insider'), Buffer.from('online'), true);
  t.ok(await until(async () => (await retained(cp, topics.state('insider'))) === 1), 'its own state is retained');
  t.ok(c3.connected, 'and it stays connected');
  await publish(c3, topics.state('insider'), Buffer.alloc(60_000, 1), true);
  await closed(c3);
  t.ok((cp.broker!.publishes.refused.get('size') ?? 0) >= 1, 'a state payload larger than the protocol\'s is refused for its size');
  t.equal(await retained(cp, 'kagi/#'), sizeBefore + 1, 'the broker holds nothing more than the one state');
});

t.test('finding 2: a continue naming thousands of made-up VPNs costs a bounded number of notices', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  let notices = 0;
  const a = await joinedAgent(t, cp, 'insider', 'alice', { lose: (dir, _topic, bytes) => (dir === 'in' && typeOf(bytes) === 'notice' && notices++, false) });
  const peer = (a as unknown as { session: { peer: Peer } }).session.peer;
  const made = Array.from({ length: 4000 }, (_, i) => ({ id: `f${i}` }));
  // The same member four times (the run's second trick), a thousand made-up VPNs each: a list holds at most 1,024.
  const members = [0, 1, 2, 3].map((k) => ({ member: 'insider', vpns: [...made.slice(k * 1000, k * 1000 + 1000), { id: 'plant' }] }));
  await peer.sendChannel('config', { type: 'continue', body: { members } });
  await peer.sendChannel('config', { type: 'continue', body: { members } });
  t.ok(await until(() => logged(lines, /config: continue from insider/).length >= 2, 5000), 'both continues were handled');
  // Notices go out one after another per holder; give them time to all go.
  await until(() => false, 1500);
  const told = logged(lines, /config: (told|could not tell) insider that insider is out/).length;
  t.ok(told <= 8, `at most 8 notices for 8,000 stale claims in two messages (${told})`);
  if (told === 0) t.comment(logged(lines, /insider/).join('\n'));
  t.ok(told >= 1, 'a stale claim is still told (the agent may have missed its notice)');
  t.ok(notices <= 8, `the agent received ${notices} notices`);
  t.equal(a.state, 'joined', 'the insider is still a member of plant (the real VPN in its claim)');
});

t.test('finding 2, members: a name repeated is read once; a list over the cap is refused whole', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const a = await joinedAgent(t, cp, 'insider', 'alice');
  const peer = (a as unknown as { session: { peer: Peer } }).session.peer;
  // The real store, counted: which members' network info the claim made the config server read.
  const store = cp.store as unknown as { getNetworkInfo(id: string): Promise<unknown> };
  const read = new Map<string, number>();
  const getNetworkInfo = store.getNetworkInfo.bind(cp.store);
  store.getNetworkInfo = (id) => (read.set(id, (read.get(id) ?? 0) + 1), getNetworkInfo(id));
  const repeated = Array.from({ length: 1000 }, () => ({ member: 'nobody-i-hold', vpns: [{ id: 'plant' }] }));
  await peer.sendChannel('config', { type: 'continue', body: { members: repeated } });
  t.ok(await until(() => logged(lines, /config: continue from insider/).length >= 1, 5000), 'the continue was handled');
  t.equal(read.get('nobody-i-hold'), 1, 'a member named 1,000 times is looked up once');
  // 4,097 short entries (about 53 KB) fit one control message (64 KiB).
  const over = Array.from({ length: 4097 }, (_, i) => ({ member: `m${i}` }));
  const dropped = () => [...cp.peers.config!.dropped.values()].reduce((x, y) => x + y, 0);
  const before = dropped();
  await peer.sendChannel('config', { type: 'continue', body: { members: over } });
  t.ok(await until(() => dropped() > before, 5000), 'a continue listing 4,097 members is dropped');
  t.notOk([...read.keys()].some((k) => k.startsWith('m')), 'and none of them was looked up');
});

/** The flooder (bench/flooder.ts) as device `b`, in a process of its own; `sent()` is what it has published. */
function flooder(t: { teardown(fn: () => void): void }, cp: ControlPlane, b: Bundle): { sent(): number; stop(): void } {
  const child = spawn(process.execPath, [...nodeArgs('bench/flooder.ts'), cp.brokerUrl, b.id, toHex(b.secretKey), toHex(b.services.broker)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let sent = 0;
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    const m = /sent (\d+)/.exec(d.trim().split('\n').at(-1)!);
    if (m) sent = Number(m[1]);
  });
  const stop = () => void child.kill();
  t.teardown(stop);
  return { sent: () => sent, stop };
}

t.test('finding 3: a flood of garbage from one device: dropped before the services, honest joins go on', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { lines, quota: { overForMs: 2000 } });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const flood = flooder(t, cp, await device(cp, 'insider'));
  const seen = () => [...cp.broker!.publishes.dropped.values()].reduce((a, b) => a + b, 0);
  t.ok(await until(() => seen() > 2_000, 20_000), `the insider floods (${flood.sent()} sent, ${seen()} dropped so far)`);
  for (const id of ['honest-1', 'honest-2', 'honest-3']) {
    const started = Date.now();
    const honest = agent(await device(cp, id), cp.brokerUrl);
    t.teardown(() => honest.stop());
    await honest.start();
    await honest.configure();
    await honest.join('bob', 'bob-password');
    t.equal(honest.state, 'joined', `${id} joined during the flood (${Date.now() - started} ms)`);
  }
  t.ok(await until(() => cp.broker!.publishes.disconnected >= 1, 10_000), 'the insider, staying over its quota, was disconnected');
  flood.stop();
  const sent = flood.sent();
  t.ok(seen() > 0, `over-quota publishes were dropped (${seen()} of ${sent} sent)`);
  t.ok(cp.metrics.value('kagi_broker_dropped_total', { reason: 'control' }) > 0, 'by reason in /metrics (control)');
  t.ok(cp.metrics.value('kagi_broker_disconnects_total', { reason: 'control' }) >= 1, 'and the disconnect');
  const reached = cp.metrics.value('kagi_messages_dropped_total', { service: 'config', reason: 'cbor' }) + cp.metrics.value('kagi_messages_dropped_total', { service: 'config', reason: 'malformed' });
  t.ok(reached <= 4_000, `the config server decoded a bounded part of the flood (${reached}; the control quota's burst is 1,000, then 100/s)`);
  t.same(await cp.store.membershipsOf('insider'), [], 'the garbage changed nothing');
});
