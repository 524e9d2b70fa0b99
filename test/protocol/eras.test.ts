/**
 * Sender eras (decision 62): a sender that lost its counters (storage none,
 * a wiped state file) is taken from its first sealed request, in a new era;
 * every message of an earlier era still meets that era's window.
 */
import t from 'tap';
import { Peer } from '../../protocol/peer.js';
import { MemoryNumberStore } from '../../protocol/store.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';

const c = nodeCrypto();

t.test('a reset sender is taken at once; a replay of its earlier era is refused', async (t) => {
  const dk = c.generateKeyPair();
  const sk = c.generateKeyPair();
  const handled: unknown[] = [];
  const wire: Uint8Array[] = [];
  const peers = new Map<string, Peer>();
  const publish = (from: string) => async (topic: string, bytes: Uint8Array) => {
    if (from === 'dev-1') wire.push(bytes);
    await peers.get(topic)?.receive(bytes);
  };
  const service = new Peer({
    crypto: c, id: 'config', secretKey: sk.secretKey, numbers: new MemoryNumberStore(), transport: { publish: publish('config') },
    keyOf: async (id) => (id === 'dev-1' ? dk.publicKey : undefined),
    replyTopic: () => 'dev-1',
    onRequest: async (m) => (handled.push(m.body), { type: 'config.response', body: { ok: true } }),
  });
  peers.set('config', service);
  /** One boot of a device that keeps nothing. */
  const boot = () => {
    const dev = new Peer({
      crypto: c, id: 'dev-1', secretKey: dk.secretKey, numbers: new MemoryNumberStore(), transport: { publish: publish('dev-1') },
      keyOf: async () => sk.publicKey, replyTopic: () => 'config',
    });
    peers.set('dev-1', dev);
    return (n: number) => dev.request({ to: 'config', pkR: sk.publicKey, topic: 'config', type: 'config.request', body: { n }, timeoutMs: 1000 }).then((r) => (r.secrets.destroy(), r.type));
  };
  const first = boot();
  for (let n = 1; n <= 40; n++) t.equal(await first(n), 'config.response', n === 1 ? 'first boot: answered' : `request ${n} answered`);
  const old = wire.slice();
  const second = boot();
  t.equal(await second(41), 'config.response', 'after a reset its seq 1 is taken at once (a new era)');
  t.equal(handled.length, 41, 'and handled');
  const replays = (service.dropped.get('replay') ?? 0);
  for (const bytes of [old.at(-1)!, old.at(-2)!, old[0]!, wire.at(-1)!]) await service.receive(bytes);
  t.equal(handled.length, 41, 'no replayed request is handled: the last two of the earlier era, its first, the new era\'s first');
  t.equal((service.dropped.get('replay') ?? 0) - replays, 4, 'each refused as a replay');
});
