/**
 * The Peer's cheap checks come before the work they guard (decision 104):
 * a sealed request of a type or sender the party never takes is dropped
 * on its header, before the sender's key is looked up (the store read
 * that precedes every HPKE open); a copy of a request already opened is
 * dropped by its enc, before a second lookup and open; an unsolicited
 * channel message of a type the party never takes is dropped before its
 * channel keys are read. Two real Peers, real crypto, the lookups counted.
 */
import t from 'tap';
import { Peer } from '../../protocol/peer.js';
import { MemoryNumberStore } from '../../protocol/store.js';
import { MemoryChannelBook, type ChannelBook } from '../../protocol/channel.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';

const c = nodeCrypto();

t.test('header, copy and channel checks drop before any key lookup or open', async (t) => {
  const dk = c.generateKeyPair();
  const sk = c.generateKeyPair();
  const wire: Uint8Array[] = [];
  let keyLookups = 0;
  let channelReads = 0;
  const handled: string[] = [];
  const book = new MemoryChannelBook();
  const counted: ChannelBook = { ...book, get: (p) => (channelReads++, book.get(p)), set: book.set.bind(book), setIfAbsent: book.setIfAbsent.bind(book), delete: book.delete.bind(book) };
  const service = new Peer({
    crypto: c, id: 'config', secretKey: sk.secretKey, numbers: new MemoryNumberStore(), transport: { publish: async () => {} },
    keyOf: async (id) => (keyLookups++, id === 'dev-1' ? dk.publicKey : undefined),
    replyTopic: () => 'dev-1',
    channels: counted,
    takesRequest: (env) => env.type === 'admin.request',
    takesChannel: (env) => env.type === 'continue',
    onRequest: async (m) => (handled.push(m.env.type), undefined),
    onChannel: async (m) => (handled.push(m.env.type), undefined),
  });
  const dev = new Peer({
    crypto: c, id: 'dev-1', secretKey: dk.secretKey, numbers: new MemoryNumberStore(),
    transport: { publish: async (_topic, bytes) => void wire.push(bytes) },
    keyOf: async () => sk.publicKey, replyTopic: () => 'config', channels: new MemoryChannelBook(),
  });
  /** What the device publishes for one request (its answer, if any, is not waited for). */
  const ask = async (type: 'admin.request' | 'config.request') => {
    const n = wire.length;
    void dev.request({ to: 'config', pkR: sk.publicKey, topic: 'config', type, body: { n: 1 }, timeoutMs: 50 }).catch(() => {});
    while (wire.length === n) await new Promise((r) => setImmediate(r));
    return wire.at(-1)!;
  };
  const drops = (reason: string) => service.dropped.get(reason) ?? 0;

  await service.receive(await ask('config.request'));
  t.equal(drops('type'), 1, 'a request type it never takes: dropped as type');
  t.equal(keyLookups, 0, 'before the sender\'s key was looked up (so before any HPKE open)');

  const admin = await ask('admin.request');
  await service.receive(admin);
  t.same(handled, ['admin.request'], 'a type it takes is opened and handled');
  t.equal(keyLookups, 1, 'with one key lookup');
  await service.receive(admin);
  t.equal(drops('replay'), 1, 'its copy: dropped');
  t.equal(keyLookups, 1, 'by its enc, before a second lookup and open');
  t.same(handled, ['admin.request'], 'and not handled twice');

  // A channel with the service, then a channel message of a type it never takes unasked.
  const keys = { send: c.randomBytes(32), recv: c.randomBytes(32) };
  await book.set('dev-1', { send: keys.recv, recv: keys.send });
  await (dev as unknown as { o: { channels: ChannelBook } }).o.channels.set('config', keys);
  await dev.sendChannel('config', { type: 'keys.fetch', body: {} });
  await service.receive(wire.at(-1)!);
  t.equal(drops('type'), 2, 'an unsolicited channel message of a type it never takes: dropped as type');
  t.equal(channelReads, 0, 'before its channel keys were read');
  await dev.sendChannel('config', { type: 'continue', body: { members: [] } });
  await service.receive(wire.at(-1)!);
  t.equal(channelReads, 1, 'one it takes reads them');
  t.same(handled, ['admin.request', 'continue'], 'and is handled');
});
