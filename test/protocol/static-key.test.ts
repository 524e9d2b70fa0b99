/**
 * Static keys held by the backend (Crypto.holdStaticKey): the same shared
 * secrets as without, on both backends, and a held key still refuses a
 * low-order peer. The node backend keeps the parsed key by array identity.
 */
import t from 'tap';
import { backends } from '../helpers/backends.js';
import { Crypto } from '../../protocol/crypto/backend.js';

for (const c of backends) {
  t.test(`held static keys on ${c.name}`, async (t) => {
    const me = c.generateKeyPair();
    const peers = [c.generateKeyPair(), c.generateKeyPair()];
    const before = peers.map((p) => [...c.dh(me.secretKey, p.publicKey)]);
    c.holdStaticKey(me.secretKey);
    c.holdStaticKey(me.secretKey); // twice: still one key
    t.same(peers.map((p) => [...c.dh(me.secretKey, p.publicKey)]), before, 'the same shared secrets once held');
    t.same(peers.map((p) => [...c.dh(p.secretKey, me.publicKey)]), before, 'and the peers agree');
    const other = c.generateKeyPair();
    t.notSame([...c.dh(other.secretKey, peers[0]!.publicKey)], before[0], 'another key (not held) is not mistaken for the held one');
    t.throws(() => c.dh(me.secretKey, new Uint8Array(32)), /all-zero/, 'a held key still refuses a low-order peer');
    t.throws(() => c.holdStaticKey(new Uint8Array(31)), /32 bytes/, 'only a 32-byte key is held');
  });
}

for (const b of backends) {
  t.test(`static–static DH kept per peer, bounded, on ${b.name}`, async (t) => {
    const c = new Crypto(b.backend, { staticDhCache: 2 });
    const me = c.generateKeyPair();
    const peers = [c.generateKeyPair(), c.generateKeyPair(), c.generateKeyPair()];
    const plain = peers.map((p) => [...c.dh(me.secretKey, p.publicKey)]);
    t.same(peers.map((p) => [...c.staticDh(me.secretKey, p.publicKey)]), plain, 'not held: the plain DH');
    c.holdStaticKey(me.secretKey);
    t.same([...c.publicKey(me.secretKey)], [...me.publicKey], 'our own public key, held');
    const own = c.publicKey(me.secretKey);
    own.fill(0);
    t.same([...c.publicKey(me.secretKey)], [...me.publicKey], 'a caller wiping its copy of our public key changes nothing');
    for (let round = 0; round < 3; round++) {
      // Three peers through a bound of two: every round evicts and recomputes.
      const got = peers.map((p) => c.staticDh(me.secretKey, p.publicKey));
      t.same(got.map((x) => [...x]), plain, `round ${round}: the same secrets through the cache`);
      for (const x of got) x.fill(0); // callers wipe their copies
    }
    t.same([...c.staticDh(me.secretKey, peers[2]!.publicKey)], plain[2], 'a cached secret survives its copies being wiped');
    t.throws(() => c.staticDh(me.secretKey, new Uint8Array(32)), /all-zero/, 'a low-order peer is refused, held or not');
    t.throws(() => c.staticDh(me.secretKey, new Uint8Array(31)), /32 bytes/, 'a short peer key is refused');
  });
}
