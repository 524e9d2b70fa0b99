/**
 * A join's keys come on the join's own keys channel (decision 134): the
 * joining holder exports it from its sealed join request, the auth server
 * hands it on, and the key server sends the keys as one `keys.update`
 * under it instead of an HPKE-sealed `keys.deliver`. On the real embedded
 * broker, every message to the device's inbox watched.
 *
 * A device that does not ask for that (an agent of an earlier version)
 * still gets the sealed delivery: here a raw Peer as the device, making
 * the requests such an agent made. And an agent still takes a sealed
 * delivery (from a key server of an earlier version): one made here with
 * the key server's own key, handed to a joined agent's link.
 */
import t from 'tap';
import type { MqttClient } from 'mqtt';
import { controlPlane, crypto, device, rawDevice, tempDir, testPlatform, typeOf, until, vpnWithUsers } from '../helpers/control-plane.js';
import { TerminalAgent } from '../../device/terminal.js';
import { MemorySecretStore } from '../../device/tickets.js';
import { plain, startRelay } from '../helpers/relay.js';
import { deadline } from '../helpers/deadline.js';
import { Peer, type Reply } from '../../protocol/peer.js';
import { MemoryNumberStore } from '../../protocol/store.js';
import { asReceiver, MemoryChannelBook } from '../../protocol/channel.js';
import { asBody, list } from '../../protocol/body.js';
import { topics } from '../../protocol/topics.js';
import { sealRequest, wireSeconds } from '../../protocol/sealed.js';
import type { MessageType } from '../../protocol/messages.js';

t.test('a join\'s keys come as one keys.update on the join\'s own channel, which both ends keep', async (t) => {
  const cp = await controlPlane(tempDir(t), { rekeyPeriodMs: 0 });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const b = await device(cp, 'term-k');
  const inbox: MessageType[] = [];
  // Its tickets outlive an agent, as FILE.tickets does.
  const wallet = new MemorySecretStore();
  const watched = () => new TerminalAgent(b, { ...testPlatform(cp.brokerUrl, { lose: (dir, _topic, bytes) => (dir === 'in' && inbox.push(typeOf(bytes)!), false) }), secrets: wallet }, { timeoutMs: deadline(3000), attempts: 2 });
  const a = watched();
  t.teardown(() => a.stop({ leave: false }));
  await a.start();
  await a.configure();
  inbox.length = 0;
  await a.join('alice', 'alice-password');
  t.same(inbox, ['keys.update', 'join.response'], 'the join brought one keys.update, then the answer: no sealed keys.deliver');
  t.equal(a.epochs().plant, 1, 'joined at epoch 1');
  const keyId = async () => (await cp.store.membershipsOf('term-k')).find((m) => m.vpnId === 'plant')?.keyId;
  t.equal(await keyId(), 1, 'its acknowledgement moved the key id');

  // The next rekey goes on the keys channel the key server kept: the join's.
  await cp.store.setRekeyRequest('plant', Date.now());
  t.ok(await until(() => a.epochs().plant === 2, deadline(10_000)), 'the rekey opens at the holder: both ends hold the join\'s channel');
  t.ok(await until(async () => (await keyId()) === 2, deadline(10_000)), 'and its acknowledgement moves the key id');

  // A re-join on the ticket (a restart) brings a new channel again.
  await a.stop({ leave: false });
  const again = watched();
  t.teardown(() => again.stop({ leave: false }));
  await again.start();
  inbox.length = 0;
  await again.join('alice');
  t.same(inbox, ['keys.update', 'join.response'], 'the re-join on the ticket: one keys.update on its own channel, then the answer');
  await cp.store.setRekeyRequest('plant', Date.now());
  t.ok(await until(() => again.epochs().plant === 3, deadline(10_000)), 'and the next rekey opens under the re-join\'s channel');
});

t.test('a join that does not ask for its keys on its channel (an earlier agent) gets the sealed keys.deliver', async (t) => {
  const cp = await controlPlane(tempDir(t), { rekeyPeriodMs: 0 });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const b = await device(cp, 'term-old');
  const client: MqttClient = await rawDevice(cp, b);
  t.teardown(() => client.end(true));
  const delivered: MessageType[] = [];
  const channels = new MemoryChannelBook();
  const peer: Peer = new Peer({
    crypto, id: b.id, secretKey: b.secretKey, numbers: new MemoryNumberStore(), channels,
    transport: { publish: async (topic, bytes) => void (await client.publishAsync(topic, Buffer.from(bytes), { qos: 1 })) },
    keyOf: async (id) => (id === 'auth' || id === 'config' || id === 'keys' ? b.services[id] : undefined),
    replyTopic: (id) => topics.service(id as 'keys', 'reply'),
    // As the agents before decision 134 answered a delivery: take its channel, acknowledge what it holds.
    onRequest: async (m): Promise<Reply | undefined> => {
      delivered.push(m.env.type);
      if (m.env.type !== 'keys.deliver') return undefined;
      await channels.set('keys', asReceiver(m.secrets.channelKeys()));
      const vpns = list(asBody(m.body), 'vpns').map((x) => ({ id: asBody(x).id, epoch: asBody(x).epoch }));
      return { type: 'keys.ack', body: { member: b.id, vpns } };
    },
  });
  client.on('message', (_topic, payload) => void peer.receive(new Uint8Array(payload)));
  await client.subscribeAsync(topics.inbox(b.id), { qos: 1 });
  const ask = (type: 'config.request' | 'join.request', op: 'request' | 'join', body: unknown) =>
    peer.request({ to: 'auth', pkR: b.services.auth, topic: topics.service('config', op), type, body, replyFrom: 'config', timeoutMs: deadline(5000) });
  const config = await ask('config.request', 'request', { mac: b.mac });
  t.equal(config.type, 'config.response', 'configured');
  config.secrets.destroy();
  // A device's own join without its MAC: refused before any password check
  // (no config request goes before a join, decision 138).
  const bare = await ask('join.request', 'join', { user: 'alice', password: 'alice-password' });
  bare.secrets.destroy();
  t.match({ type: bare.type, body: bare.body }, { type: 'error', body: { code: 'mac', reason: /carries no MAC/ } }, 'a join of its own without its MAC is refused');
  const joined = await ask('join.request', 'join', { user: 'alice', password: 'alice-password', mac: b.mac });
  joined.secrets.destroy();
  t.equal(joined.type, 'join.response', 'joined');
  t.same(delivered, ['keys.deliver'], 'its keys came sealed to its static key, as before');
  t.equal((await cp.store.membershipsOf(b.id)).find((m) => m.vpnId === 'plant')?.keyId, 1, 'and its acknowledgement moved the key id');
});

t.test('two ports of one relay joining at once: the relay and the key server end on the same keys channel', async (t) => {
  const cp = await controlPlane(tempDir(t), { rekeyPeriodMs: 0 });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { pam: 'pam-password' });
  const { relay, bound } = await startRelay(t, cp, 'relay-k');
  const p1 = await plain(t, cp, 'plain-k1', 'relay-k', 'p1', bound.p1!);
  const p2 = await plain(t, cp, 'plain-k2', 'relay-k', 'p2', bound.p2!);
  await Promise.all([p1.p.configure(), p2.p.configure()]);
  // Two joins, two proposed channels, two deliveries to one holder (one at a time at the key server).
  const joined = await Promise.all([p1.p.join('pam', 'pam-password'), p2.p.join('pam', 'pam-password')]);
  t.same(joined.map((v) => v.map((x) => x.id)), [['plant'], ['plant']], 'both ports joined');
  t.same(relay.status().map((p) => p.state), ['FORWARDING', 'FORWARDING'], 'both ports forward');
  const keyId = async (id: string) => (await cp.store.membershipsOf(id)).find((m) => m.vpnId === 'plant')?.keyId;
  await cp.store.setRekeyRequest('plant', Date.now());
  // A key id moves only on the holder's acknowledgement of an update it opened.
  t.ok(await until(async () => (await keyId('plain-k1')) === 2 && (await keyId('plain-k2')) === 2, deadline(10_000)), 'the rekey opens at the relay for both ports: it holds the channel the key server kept');
});

t.test('an agent still takes a sealed keys.deliver (from a key server of an earlier version)', async (t) => {
  const cp = await controlPlane(tempDir(t), { rekeyPeriodMs: 0 });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const b = await device(cp, 'term-d');
  const out: MessageType[] = [];
  let inject: ((topic: string, bytes: Uint8Array) => void) | undefined;
  const base = testPlatform(cp.brokerUrl, { spy: (_topic, bytes) => void out.push(typeOf(bytes)!) });
  const a = new TerminalAgent(b, { ...base, connect: async (l) => ((inject = l.onMessage), base.connect(l)) }, { timeoutMs: deadline(3000), attempts: 2 });
  t.teardown(() => a.stop({ leave: false }));
  await a.start();
  await a.configure();
  await a.join('alice', 'alice-password');
  t.equal(a.epochs().plant, 1, 'joined at epoch 1 (its keys on the join\'s channel)');

  // What an earlier key server sent: keys sealed from its static key to the holder's, in an era of its own.
  const body = { vpns: [{ id: 'plant', epoch: 2, key: crypto.randomBytes(32), protocol: 'tcp', port: 5020 }] };
  const { bytes } = sealRequest(crypto, { type: 'keys.deliver', from: 'keys', to: b.id, seq: 1, reqId: 7 }, cp.keys.keys.secretKey, crypto.publicKey(b.secretKey), body, wireSeconds(Date.now()), 12345);
  out.length = 0;
  inject!(topics.inbox(b.id), bytes);
  t.ok(await until(() => a.epochs().plant === 2, deadline(5000)), 'the agent installs its keys');
  t.ok(await until(() => out.includes('keys.ack'), deadline(5000)), 'and acknowledges them, as before');
});
