/**
 * Channel messages between two Peers (a device and a service) joined by an
 * in-memory transport: request/answer, one-way, and every way a channel
 * message can be wrong (no channel, tampered, replayed, wrong direction,
 * answer from the wrong peer).
 */
import t from 'tap';
import { Peer, type PeerOptions } from '../../protocol/peer.js';
import { MemoryNumberStore } from '../../protocol/store.js';
import { MemoryChannelBook, asReceiver, asRequester } from '../../protocol/channel.js';
import { KagiError } from '../../protocol/errors.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { openRequest, sealRequest } from '../../protocol/sealed.js';
import { decodeEnvelope } from '../../protocol/envelope.js';
import { equalCT } from '../../protocol/bytes.js';

const c = nodeCrypto();

function pair(o: { dev?: Partial<PeerOptions>; svc?: Partial<PeerOptions> } = {}) {
  const wire: Uint8Array[] = [];
  const peers = new Map<string, Peer>();
  const mk = (id: string, extra: Partial<PeerOptions> = {}) => {
    const p = new Peer({
      crypto: c, id, secretKey: c.randomBytes(32), numbers: new MemoryNumberStore(),
      transport: { publish: async (topic, bytes) => (wire.push(bytes), void peers.get(topic)!.receive(bytes)) },
      keyOf: async () => undefined,
      replyTopic: (to) => to,
      channels: new MemoryChannelBook(),
      ...extra,
    });
    peers.set(id, p);
    return p;
  };
  const devBook = new MemoryChannelBook();
  const svcBook = new MemoryChannelBook();
  const dev = mk('dev-1', { channels: devBook, ...o.dev });
  const svc = mk('config', { channels: svcBook, ...o.svc });
  return { dev, svc, devBook, svcBook, wire, peers, mk };
}

async function channel(devBook: MemoryChannelBook, svcBook: MemoryChannelBook) {
  const k = { up: c.randomBytes(32), down: c.randomBytes(32) };
  await devBook.set('config', asRequester(k));
  await svcBook.set('dev-1', asReceiver(k));
}

const tick = () => new Promise((r) => setTimeout(r, 5));

t.test('a channel request is answered on the channel; one-way messages arrive', async (t) => {
  const seen: unknown[] = [];
  const p = pair({ svc: { onChannel: async (m) => (seen.push([m.env.type, m.body]), m.env.type === 'continue' ? undefined : { type: 'poll', body: { members: [] } }) } });
  await channel(p.devBook, p.svcBook);
  const r = await p.dev.channelRequest({ to: 'config', type: 'poll.reply', body: { members: ['x'] }, timeoutMs: 1000 });
  t.same({ type: r.type, body: r.body }, { type: 'poll', body: { members: [] } }, 'the answer comes back to the waiting request');
  t.type(r.seq, 'number', 'with the seq the request went out with');
  await p.dev.sendChannel('config', { type: 'continue', body: { members: [] } });
  await tick();
  t.same(seen, [['poll.reply', { members: ['x'] }], ['continue', { members: [] }]], 'the service saw both, in order');
});

t.test('an answer opens under the keys its request went out under: one read of the book per round trip; a channel replaced meanwhile is read again', async (t) => {
  let reads = 0;
  const p = pair({ svc: { onChannel: async () => ({ type: 'poll', body: { members: [] } }) } });
  const counted = p.devBook;
  const get = counted.get.bind(counted);
  counted.get = (peer) => (reads++, get(peer));
  await channel(p.devBook, p.svcBook);
  const r = await p.dev.channelRequest({ to: 'config', type: 'poll.reply', body: { members: [] }, timeoutMs: 1000 });
  t.same(r.type, 'poll', 'answered');
  t.equal(reads, 1, 'the requester read its channel once: to seal (the answer opened under the same keys)');

  // Both ends replace the channel between the request and its answer: the
  // service opens the request under the old channel and seals its answer
  // under the new one, which the requester's book holds by then.
  const old = (await p.devBook.get('config'))!;
  const k2 = { up: c.randomBytes(32), down: c.randomBytes(32) };
  let svcReads = 0;
  p.svcBook.get = async () => {
    if (svcReads++ === 0) return { send: old.recv, recv: old.send }; // to open the request
    await p.devBook.set('config', asRequester(k2)); // the requester's end is replaced too
    return asReceiver(k2); // to seal the answer
  };
  reads = 0;
  const again = await p.dev.channelRequest({ to: 'config', type: 'poll.reply', body: { members: [] }, timeoutMs: 2000 });
  t.same(again.type, 'poll', 'an answer under the channel that replaced the request\'s opens through the book');
  t.equal(reads, 2, 'the book was read again for it');
  t.equal(p.dev.dropped.size, 0, 'nothing dropped');
});

t.test('what a channel refuses, and why', async (t) => {
  const seen: string[] = [];
  const p = pair({ svc: { onChannel: async (m) => (seen.push(m.env.type), undefined) } });
  await t.rejects(p.dev.sendChannel('config', { type: 'continue', body: {} }), { name: 'KagiError', code: 'key' }, 'no channel: the sender refuses');
  await p.devBook.set('config', { send: c.randomBytes(32), recv: c.randomBytes(32) });
  await p.dev.sendChannel('config', { type: 'continue', body: {} });
  await tick();
  t.equal(p.svc.dropped.get('key'), 1, 'no channel on the receiver: dropped as key');

  await channel(p.devBook, p.svcBook);
  await p.dev.sendChannel('config', { type: 'continue', body: { n: 1 } });
  await tick();
  t.same(seen, ['continue'], 'a good message passes');
  const good = p.wire[p.wire.length - 1]!;
  await p.svc.receive(good);
  t.equal(p.svc.dropped.get('replay'), 1, 'the same message again: replay');
  const bad = good.slice();
  bad[bad.length - 1]! ^= 1;
  await p.svc.receive(bad);
  t.equal(p.svc.dropped.get('auth'), 1, 'one flipped bit: auth');

  // The device seals with its receive key (the wrong direction).
  const keys = (await p.devBook.get('config'))!;
  await p.devBook.set('config', { send: keys.recv, recv: keys.send });
  await p.dev.sendChannel('config', { type: 'continue', body: {} });
  await tick();
  t.equal(p.svc.dropped.get('auth'), 2, 'the other direction’s key does not open: auth');
  t.same(seen, ['continue'], 'nothing wrong reached the handler');
});

t.test('an answer must come from the peer asked, in time', async (t) => {
  const p = pair();
  await channel(p.devBook, p.svcBook);
  await t.rejects(p.dev.channelRequest({ to: 'config', type: 'keys.fetch', body: {}, timeoutMs: 50 }), { name: 'KagiError', code: 'unexpected' }, 'no answer: unexpected after the timeout');
  t.type(new KagiError('key', 'x'), KagiError);
});

t.test('a channel book wiped on clear: the keys it handed out are zeros', async (t) => {
  const book = new MemoryChannelBook();
  await book.set('config', { send: new Uint8Array(32).fill(7), recv: new Uint8Array(32).fill(9) });
  const held = (await book.get('config'))!;
  book.clear();
  t.equal(await book.get('config'), undefined, 'forgotten');
  t.ok(held.send.every((x) => x === 0) && held.recv.every((x) => x === 0), 'and wiped in place');
});

t.test('the replay window follows the channel: a sender that lost its counters is taken on a new one', async (t) => {
  const seen: unknown[] = [];
  const p = pair({ svc: { onChannel: async (m) => (seen.push(asN(m.body)), undefined) } });
  await channel(p.devBook, p.svcBook);
  for (const n of [1, 2, 3]) await p.dev.sendChannel('config', { type: 'continue', body: { n } });
  await tick();
  const oldFirst = p.wire[0]!;
  t.same(seen, [1, 2, 3], 'three messages on the first channel');

  // Restarted with fresh counters and no channel (as a board with storage none).
  const devBook = new MemoryChannelBook();
  const dev = p.mk('dev-1', { channels: devBook, numbers: new MemoryNumberStore() });
  await channel(devBook, p.svcBook);
  await dev.sendChannel('config', { type: 'continue', body: { n: 4 } });
  await tick();
  const fresh = p.wire[p.wire.length - 1]!;
  t.equal(decodeEnvelope(fresh).seq, 1, 'its seq starts at 1 again');
  t.same(seen, [1, 2, 3, 4], 'seq 1 on the new channel is taken');
  await p.svc.receive(oldFirst);
  t.equal(p.svc.dropped.get('auth'), 1, 'seq 1 of the old channel does not open under the new key: auth');
  await p.svc.receive(fresh);
  t.equal(p.svc.dropped.get('replay'), 1, 'seq 1 of the new channel again: replay');
  t.same(seen, [1, 2, 3, 4], 'nothing old or repeated reached the handler');
});

t.test('two deliveries give two different channels, each agreed by both ends', async (t) => {
  const sk = c.generateKeyPair();
  const rk = c.generateKeyPair();
  const channels = [1, 2].map((seq) => {
    const route = { type: 'keys.deliver' as const, from: 'keys', to: 'dev-1', seq, reqId: seq };
    const { bytes, secrets } = sealRequest(c, route, sk.secretKey, rk.publicKey, { vpns: [] }, 1, 0);
    const opened = openRequest(c, decodeEnvelope(bytes), rk.secretKey, sk.publicKey);
    const server = asRequester(secrets.channelKeys());
    const holder = asReceiver(opened.secrets.channelKeys());
    t.ok(equalCT(server.send, holder.recv) && equalCT(server.recv, holder.send), `delivery ${seq}: both ends hold the same channel`);
    return server;
  });
  t.notOk(equalCT(channels[0]!.send, channels[1]!.send), 'the second delivery\'s channel is not the first\'s (keys → holder)');
  t.notOk(equalCT(channels[0]!.recv, channels[1]!.recv), 'nor the other direction');
});

function asN(b: unknown): unknown {
  return (b as { n?: unknown }).n;
}
