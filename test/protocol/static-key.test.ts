/**
 * Static keys held by the backend (Crypto.holdStaticKey): the same shared
 * secrets as without, on both backends, and a held key still refuses a
 * low-order peer. The node backend keeps the parsed key by array identity.
 */
import t from 'tap';
import { backends } from '../helpers/backends.js';

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
