/**
 * An agent's static secrets kept across restarts (decision 124,
 * protocol/static-secrets.ts): what is sealed opens to the same values,
 * under the same static key only; any changed byte, another key, a cut
 * blob or another format opens to nothing (and the agent computes again);
 * a held key seeded with them answers without an X25519 of its own.
 */
import t from 'tap';
import { backends } from '../helpers/backends.js';
import { Crypto, type CryptoPrimitives, type KnownStatics } from '../../protocol/crypto/backend.js';
import { nodePrimitives } from '../../runtime/node/crypto.js';
import { openStaticSecrets, sealStaticSecrets, MAX_STATIC_PEERS } from '../../protocol/static-secrets.js';
import { concat, utf8 } from '../../protocol/bytes.js';
import { encode } from '../../protocol/cbor.js';

/** What `me` holds after computing its secrets with `peers`, as an agent keeps it. */
function computed(c: Crypto, peers: number) {
  const me = c.generateKeyPair();
  const others = Array.from({ length: peers }, () => c.generateKeyPair().publicKey);
  const known: KnownStatics = { publicKey: me.publicKey, shared: others.map((peer) => ({ peer, secret: c.dh(me.secretKey, peer) })) };
  return { me, known };
}

const flat = (k: KnownStatics | undefined) => k && { publicKey: [...k.publicKey], shared: k.shared.map((x) => ({ peer: [...x.peer], secret: [...x.secret] })) };

for (const c of backends) {
  t.test(`sealed static secrets on ${c.name}`, async (t) => {
    const { me, known } = computed(c, 4);
    const blob = sealStaticSecrets(c, me.secretKey, known);
    t.same(flat(openStaticSecrets(c, me.secretKey, blob)), flat(known), 'opens to what was sealed');
    t.notSame([...sealStaticSecrets(c, me.secretKey, known)], [...blob], 'each seal draws a fresh salt (a fresh key): two seals differ');
    for (const x of known.shared) {
      const hex = Buffer.from(x.secret).toString('hex');
      t.notOk(Buffer.from(blob).toString('hex').includes(hex), 'no secret appears in the blob');
    }
    let opened = 0;
    for (let i = 0; i < blob.length; i++) {
      const bad = blob.slice();
      bad[i]! ^= 0x01;
      if (openStaticSecrets(c, me.secretKey, bad) !== undefined) opened++;
    }
    t.equal(opened, 0, `none of the ${blob.length} one-bit changes opens`);
    t.equal(openStaticSecrets(c, c.generateKeyPair().secretKey, blob), undefined, "another device's key opens nothing");
    t.equal(openStaticSecrets(c, me.secretKey, blob.subarray(0, blob.length - 1)), undefined, 'a cut blob opens nothing');
    t.equal(openStaticSecrets(c, me.secretKey, blob.subarray(0, 16)), undefined, 'a salt alone opens nothing');
    t.equal(openStaticSecrets(c, me.secretKey, new Uint8Array(0)), undefined, 'nothing opens nothing');

    // Authenticated but another format (a later version): computed again, never half-read.
    const info = utf8('kagi/v1 static secrets');
    const salt = c.randomBytes(16);
    const key = c.hkdf(me.secretKey, salt, info, 32);
    const v2 = concat(salt, c.seal(key, new Uint8Array(12), encode([2, known.publicKey, []]), info));
    t.equal(openStaticSecrets(c, me.secretKey, v2), undefined, 'another version opens nothing');
    const odd = concat(salt, c.seal(key, new Uint8Array(12), encode([1, known.publicKey, [[known.publicKey]]]), info));
    t.equal(openStaticSecrets(c, me.secretKey, odd), undefined, 'a pair of the wrong shape opens nothing');

    const many = computed(c, MAX_STATIC_PEERS + 2);
    t.equal(openStaticSecrets(c, many.me.secretKey, sealStaticSecrets(c, many.me.secretKey, many.known))?.shared.length, MAX_STATIC_PEERS, `at most ${MAX_STATIC_PEERS} peers are kept`);
  });
}

/** The node backend, counting the X25519 it is asked for. */
function counted(): { backend: CryptoPrimitives; dh: number; base: number } {
  const n = { dh: 0, base: 0 } as { backend: CryptoPrimitives; dh: number; base: number };
  n.backend = { ...nodePrimitives, x25519: (k, u, once) => (n.dh++, nodePrimitives.x25519(k, u, once)), x25519Base: (k) => (n.base++, nodePrimitives.x25519Base(k)) };
  return n;
}

t.test('a static key held with what an earlier run computed makes no X25519 for it', async (t) => {
  const earlier = new Crypto(nodePrimitives);
  const { me, known } = computed(earlier, 3);
  const n = counted();
  const c = new Crypto(n.backend);
  const sk = me.secretKey.slice(); // a fresh boot: a fresh array
  c.holdStaticKey(sk, openStaticSecrets(c, sk, sealStaticSecrets(earlier, me.secretKey, known)));
  t.same([...c.publicKey(sk)], [...me.publicKey], 'our public key, as kept');
  t.same(known.shared.map((x) => [...c.staticDh(sk, x.peer)]), known.shared.map((x) => [...x.secret]), 'the secrets, as kept');
  t.same({ dh: n.dh, base: n.base }, { dh: 0, base: 0 }, 'no X25519 computed for any of them');
  const newPeer = earlier.generateKeyPair().publicKey;
  t.same([...c.staticDh(sk, newPeer)], [...earlier.dh(me.secretKey, newPeer)], 'a peer not kept is computed');
  t.equal(n.dh, 1, 'with one X25519');
  const held = c.heldStatics(sk, [known.shared[0]!.peer, newPeer])!;
  t.same(held.shared.map((x) => [...x.peer]), [[...known.shared[0]!.peer], [...newPeer]], 'heldStatics: the peers asked for, held');
  held.shared[0]!.secret.fill(0);
  t.same([...c.staticDh(sk, known.shared[0]!.peer)], [...known.shared[0]!.secret], 'a caller wiping its copy changes nothing');
  t.equal(c.heldStatics(earlier.generateKeyPair().secretKey), undefined, 'a key not held: nothing');
  t.throws(() => new Crypto(nodePrimitives).holdStaticKey(sk.slice(), { publicKey: new Uint8Array(31), shared: [] }), /32 bytes/, 'a short public key is refused');
  t.throws(() => new Crypto(nodePrimitives).holdStaticKey(sk.slice(), { publicKey: me.publicKey, shared: [{ peer: newPeer, secret: new Uint8Array(8) }] }), /32 bytes/, 'a short secret is refused');
  const again = new Crypto(n.backend);
  const sk2 = me.secretKey.slice();
  again.holdStaticKey(sk2);
  again.holdStaticKey(sk2, { publicKey: me.publicKey, shared: [{ peer: known.shared[0]!.peer, secret: earlier.randomBytes(32) }] });
  t.same([...again.staticDh(sk2, known.shared[0]!.peer)], [...known.shared[0]!.secret], 'a key already held keeps what it has (a second call with other secrets is ignored)');
});
