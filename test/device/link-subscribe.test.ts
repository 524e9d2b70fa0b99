/**
 * Link.subscribe on real aedes over real sockets, for both links: Node's
 * MqttLink (runtime/node/mqtt.ts) and the board's BridgeLink
 * (device/board/bridge-link.ts) on the Node host bridge. The broker drops
 * the connection while a SUBSCRIBE waits for its SUBACK: the call
 * resolves (the link subscribes again at its next connect), the topic
 * works once the link is back, and a topic asked for twice is subscribed
 * once per connect.
 */
import t from 'tap';
import type { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { MqttLink } from '../../runtime/node/mqtt.js';
import { BridgeLink } from '../../device/board/bridge-link.js';
import { NodeHostBridge } from '../../runtime/node/host-bridge.js';
import { MemoryNumberStore } from '../../protocol/store.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import type { Link } from '../../device/platform.js';
import { until } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';
import { plainAedes } from '../helpers/aedes.js';

/** aedes keeps its connected clients by id; its typings do not show the map. */
const clientOf = (aedes: Aedes, id: string) => (aedes as unknown as { clients: Record<string, { close(): void }> }).clients[id]!;

const crypto = nodeCrypto();
type MakeLink = (url: string, onMessage: (topic: string, payload: Uint8Array) => void, subscriptions?: string[]) => Link & { connect(): Promise<void> };

const links: Record<string, MakeLink> = {
  MqttLink: (url, onMessage, subscriptions = []) =>
    new MqttLink({ url, clientId: 'sub-link', crypto, secretKey: crypto.randomBytes(32), numbers: new MemoryNumberStore(), subscriptions, backoff: { baseMs: 50, maxMs: 200, minMs: 10 }, onMessage }),
  BridgeLink: (url, onMessage, subscriptions = []) =>
    new BridgeLink({ host: new NodeHostBridge(url), clientId: 'sub-link', crypto, secretKey: crypto.randomBytes(32), brokerPublicKey: new Uint8Array(32), numbers: new MemoryNumberStore(), brokerAuth: 'none', random: Math.random, subscriptions, onMessage }),
};

for (const [name, makeLink] of Object.entries(links)) {
  t.test(`${name}: a connection lost before the SUBACK`, async (t) => {
    const { aedes, url } = await plainAedes(t);
    let hang = true;
    const subscribes: string[] = [];
    // The first SUBSCRIBE of 'held' waits for ever; later ones go through.
    aedes.authorizeSubscribe = (_client, sub, cb) => {
      subscribes.push(sub.topic);
      if (sub.topic === 'held' && hang) return void (hang = false);
      cb(null, sub);
    };
    const got: string[] = [];
    const link = makeLink(url, (topic, payload) => got.push(`${topic}=${new TextDecoder().decode(payload)}`));
    await link.connect();
    t.teardown(() => link.close());

    const subscribing = link.subscribe('held');
    t.ok(await until(() => subscribes.includes('held'), deadline(5000)), 'the SUBSCRIBE reached the broker');
    clientOf(aedes, 'sub-link').close();
    await subscribing;
    t.pass('subscribe resolved when the connection dropped before its SUBACK');

    t.ok(await until(() => link.connected && subscribes.filter((x) => x === 'held').length >= 2, deadline(15_000)), 'the link is back and subscribed the topic again');
    const pub = await mqtt.connectAsync(url, { clientId: 'pub' });
    t.teardown(() => pub.endAsync());
    t.ok(await until(async () => (await pub.publishAsync('held', 'x', { qos: 1 }), got.includes('held=x')), deadline(10_000)), 'a message on it arrives');

    await link.subscribe('twice');
    await link.subscribe('twice');
    const before = subscribes.length;
    clientOf(aedes, 'sub-link').close();
    t.ok(await until(() => subscribes.slice(before).includes('held'), deadline(15_000)), 'the link connected again and subscribed');
    // A message on 'twice' arriving then proves that SUBSCRIBE (every topic in one packet) is done.
    t.ok(await until(async () => link.connected && (await pub.publishAsync('twice', 'y', { qos: 1 }), got.includes('twice=y')), deadline(10_000)), 'after another reconnect');
    t.equal(subscribes.slice(before).filter((x) => x === 'twice').length, 1, 'a topic asked for twice is subscribed once per connect');
  });

  t.test(`${name}: several topics, one SUBSCRIBE`, async (t) => {
    const { aedes, url } = await plainAedes(t);
    const packets: string[][] = [];
    aedes.on('subscribe', (subs, client) => client?.id === 'sub-link' && packets.push(subs.map((x) => x.topic)));
    const got: string[] = [];
    const link = makeLink(url, (topic) => got.push(topic));
    await link.connect();
    t.teardown(() => link.close());
    await link.subscribe('vpn/a', 'vpn/b');
    t.same(packets, [['vpn/a', 'vpn/b']], 'both topics went in one SUBSCRIBE packet, acknowledged before subscribe resolved');
    const pub = await mqtt.connectAsync(url, { clientId: 'pub' });
    t.teardown(() => pub.endAsync());
    await pub.publishAsync('vpn/b', 'x', { qos: 1 });
    t.ok(await until(() => got.includes('vpn/b'), deadline(10_000)), 'a message on the second topic arrives');
  });

  t.test(`${name}: a topic granted on this connection is not sent again`, async (t) => {
    const { aedes, url } = await plainAedes(t);
    const packets: string[][] = [];
    aedes.on('subscribe', (subs, client) => client?.id === 'sub-link' && packets.push(subs.map((x) => x.topic)));
    let refuse = 'denied';
    aedes.authorizeSubscribe = (_client, sub, cb) => cb(null, sub.topic === refuse ? null : sub);
    const got: string[] = [];
    const link = makeLink(url, (topic) => got.push(topic), ['inbox', 'vpn/a']);
    await link.connect();
    t.teardown(() => link.close());
    // A message on vpn/a arriving proves the SUBACK came before it (one connection, in order).
    const pub = await mqtt.connectAsync(url, { clientId: 'pub' });
    t.teardown(() => pub.endAsync());
    t.ok(await until(async () => (await pub.publishAsync('vpn/a', 'x', { qos: 1 }), got.includes('vpn/a')), deadline(10_000)), 'the connect subscribed its list');
    await link.subscribe('vpn/a');
    await link.subscribe('vpn/a', 'vpn/b');
    t.same(packets, [['inbox', 'vpn/a'], ['vpn/b']], 'granted at connect: not sent again; a new topic alone is sent');

    // A SUBACK refusing a topic at connect: the topics asked for later go out again.
    clientOf(aedes, 'sub-link').close();
    await link.subscribe('denied');
    t.ok(await until(() => link.connected && packets.length === 3, deadline(15_000)), 'reconnected and subscribed its list');
    t.same(packets[2], ['inbox', 'vpn/a', 'vpn/b', 'denied'], 'the list, the refused topic in it');
    refuse = '';
    await link.subscribe('vpn/a', 'denied');
    t.same(packets.slice(3), [['vpn/a', 'denied']], 'after a refusal at connect, asked for again: sent again');
  });
}

