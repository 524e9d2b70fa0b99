/**
 * bench/rekey's members, in a worker thread (on a fleet each member is a
 * device of its own: its work must not run on the key server's thread).
 *
 * workerData: the broker URL, N members over K connections, and either
 * each member's keys channel (kagi: a real Peer per member opens the
 * update and acknowledges it) or none (the floor: messages are counted).
 * Posts `ready` once subscribed, `all` (with the size of one message) once
 * every member has its update, and `closed` after a `close` message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import mqtt from 'mqtt';
import { noDelay, rekeyMember as memberId } from './common.js';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { Peer } from '../protocol/peer.js';
import { MemoryNumberStore } from '../protocol/store.js';
import { MemoryChannelBook } from '../protocol/channel.js';
import { asBody, list, num } from '../protocol/body.js';
import { topics } from '../protocol/topics.js';

export interface MembersData {
  url: string;
  n: number;
  k: number;
  /** Per member i (id `m${i}`): its keys channel with the key server; absent for the floor. */
  channels?: { send: Uint8Array; recv: Uint8Array }[];
  /** The key server's public key (kagi only). */
  serverKey?: Uint8Array;
}

const d = workerData as MembersData;
const port = parentPort!;
const crypto = nodeCrypto();
const clients: mqtt.MqttClient[] = [];
const peers = new Map<string, Peer>();
let got = 0;
let bytes = 0;
const one = () => {
  if (++got === d.n) port.postMessage({ all: true, bytes });
};

if (d.channels) {
  for (let i = 0; i < d.n; i++) {
    const m = memberId(i);
    const book = new MemoryChannelBook();
    await book.set('keys', d.channels[i]!);
    const conn = i % d.k;
    peers.set(m, new Peer({
      crypto, id: m, secretKey: crypto.randomBytes(32), numbers: new MemoryNumberStore(), channels: book,
      transport: { publish: (topic, b) => clients[conn]!.publishAsync(topic, Buffer.from(b), { qos: 1 }).then(() => undefined) },
      keyOf: async () => d.serverKey,
      replyTopic: () => topics.service('keys', 'reply'),
      onChannel: async (msg) => {
        const epoch = num(asBody(list(asBody(msg.body), 'vpns')[0]), 'epoch');
        one();
        return { type: 'keys.updated', body: { member: m, vpns: [{ id: 'plant', epoch }] } };
      },
    }));
  }
}

for (let k = 0; k < d.k; k++) {
  const c = noDelay(await mqtt.connectAsync(d.url, { clientId: `sim-${k}-${Math.random().toString(16).slice(2)}`, clean: true }));
  const mine = [];
  for (let i = k; i < d.n; i += d.k) mine.push(topics.inbox(memberId(i)));
  for (let j = 0; j < mine.length; j += 500) await c.subscribeAsync(mine.slice(j, j + 500), { qos: 1 });
  c.on('message', (topic, payload) => {
    bytes ||= payload.length;
    if (!d.channels) return one();
    void peers.get(topic.split('/')[3]!)?.receive(new Uint8Array(payload.buffer, payload.byteOffset, payload.length));
  });
  clients.push(c);
}
port.on('message', (m: { close?: boolean }) => {
  if (m.close) void Promise.all(clients.map((c) => c.endAsync())).then(() => port.postMessage({ closed: true }));
});
port.postMessage({ ready: true });
