/**
 * node:crypto backend: what servers and Node agents use (OpenSSL X25519 is
 * ~15x faster than portable JS here). Same interface, same vectors.
 */
import * as nc from 'node:crypto';
import type { CryptoPrimitives } from '../../protocol/crypto/backend.js';
import { Crypto } from '../../protocol/crypto/backend.js';

// Keys go in as JWK: importing a PKCS#8 private key makes OpenSSL derive
// and check its public key (~450 µs), JWK import does not (~45 µs). OpenSSL
// computes with `d` alone; `x` is required by Node's JWK parser but unused
// for a private key, so a placeholder goes there. The RFC 7748 and
// Wycheproof vectors hold this backend to the same results as portable.
const PLACEHOLDER_X = 'A'.repeat(43);
const b64u = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString('base64url');

function privateKey(scalar: Uint8Array): nc.KeyObject {
  return nc.createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: b64u(scalar), x: PLACEHOLDER_X }, format: 'jwk' });
}

/** A public key from its JWK `x` (base64url of the 32 bytes). */
function publicKey(x: string): nc.KeyObject {
  return nc.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
}

/**
 * Peers' public keys parsed, least recently used first: the devices a
 * service seals to again (keys to every member at each rekey) and the
 * services a device seals to. Public data; bounded like the static-DH cache
 * in the facade. Ephemeral keys (HPKE enc, `once`) are not kept.
 */
const PEER_KEYS = 16_384;
const peers = new Map<string, nc.KeyObject>();

function peerKey(u: Uint8Array, once: boolean): nc.KeyObject {
  const x = b64u(u);
  if (once) return publicKey(x);
  let k = peers.get(x);
  if (k) peers.delete(x);
  else {
    k = publicKey(x);
    if (peers.size >= PEER_KEYS) peers.delete(peers.keys().next().value!);
  }
  peers.set(x, k);
  return k;
}

const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length);

/**
 * Static keys parsed once (holdStatic): node imports a raw X25519 key only
 * through JWK, and the import cost as much as the DH (40 of 80 µs; the
 * storm bench's profile had it at 10% of `kagi up`). By array identity, so
 * nothing about the key's value is kept anywhere new.
 */
const held = new WeakMap<Uint8Array, nc.KeyObject>();

/**
 * The private key object x25519Base just made: an HPKE seal makes an
 * ephemeral key's public key and then uses the key once at once; parsing
 * it twice was a third of the seal. One slot, by identity, taken once.
 */
let justMade: { scalar: Uint8Array; key: nc.KeyObject } | undefined;

function privateFor(k: Uint8Array): nc.KeyObject {
  const h = held.get(k);
  if (h) return h;
  if (justMade?.scalar === k) {
    const { key } = justMade;
    justMade = undefined;
    return key;
  }
  return privateKey(k);
}

/**
 * RFC 5869 over createHmac: Extract, then Expand one block at a time.
 * node's hkdfSync took 15.6 µs for a 32-byte key here, two HMACs take
 * 7 µs; an agent's restart derives about ten keys (its CONNECT key, its
 * kept secrets' key, each VPN frame sender key). The HKDF vectors hold it.
 */
function hkdfOverHmac(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  const prk = nc.createHmac('sha256', salt).update(ikm).digest();
  const out = new Uint8Array(length);
  let t: Buffer = Buffer.alloc(0);
  for (let i = 1, at = 0; at < length; i++) {
    const next = nc.createHmac('sha256', prk).update(t).update(info).update(Uint8Array.of(i)).digest();
    t.fill(0);
    t = next;
    out.set(t.subarray(0, Math.min(t.length, length - at)), at);
    at += t.length;
  }
  t.fill(0);
  prk.fill(0);
  return out;
}

export const nodePrimitives: CryptoPrimitives = {
  name: 'node',
  randomBytes: (n) => u8(nc.randomBytes(n)),
  x25519(k, u, once = false) {
    try {
      return u8(nc.diffieHellman({ privateKey: privateFor(k), publicKey: peerKey(u, once) }));
    } catch {
      // OpenSSL refuses to return an all-zero X25519 result (the only way
      // derive fails for well-sized inputs); report it as zeros so the
      // facade's one check decides, exactly as for the portable backend.
      return new Uint8Array(32);
    }
  },
  holdStatic(k) {
    if (!held.has(k)) held.set(k, privateKey(k));
  },
  x25519Base(k) {
    const key = held.get(k) ?? privateKey(k);
    if (!held.has(k)) justMade = { scalar: k, key };
    return u8(Buffer.from(nc.createPublicKey(key).export({ format: 'jwk' }).x!, 'base64url'));
  },
  sha256: (d) => u8(nc.createHash('sha256').update(d).digest()),
  hmacSha256: (k, d) => u8(nc.createHmac('sha256', k).update(d).digest()),
  hkdf: hkdfOverHmac,
  aeadSeal(key, nonce, pt, aad) {
    const c = nc.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: pt.length });
    return u8(Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]));
  },
  aeadSealAfter(prefix, key, nonce, pt, aad) {
    const c = nc.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: pt.length });
    const out = new Uint8Array(prefix.length + pt.length + 16);
    out.set(prefix);
    let at = prefix.length;
    for (const part of [c.update(pt), c.final()]) {
      out.set(part, at);
      at += part.length;
    }
    out.set(c.getAuthTag(), at);
    return out;
  },
  aeadOpen(key, nonce, sealed, aad) {
    const ctLen = sealed.length - 16;
    const d = nc.createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    d.setAAD(aad, { plaintextLength: ctLen });
    d.setAuthTag(sealed.subarray(ctLen));
    const out = d.update(sealed.subarray(0, ctLen));
    try {
      // final() throws when the tag does not match; ChaCha20 is a stream
      // cipher, so it adds no bytes: the plaintext is `out`, not copied again.
      const rest = d.final();
      return u8(rest.length ? Buffer.concat([out, rest]) : out);
    } catch {
      out.fill(0); // never hand out unauthenticated plaintext
      return null;
    }
  },
  chacha20Xor(key, nonce, counter, data) {
    // OpenSSL's 16-byte chacha20 IV is counter (LE32) || nonce: RFC 8439 §2.3.
    const iv = Buffer.alloc(16);
    iv.writeUInt32LE(counter, 0);
    iv.set(nonce, 4);
    const c = nc.createCipheriv('chacha20', key, iv);
    return u8(Buffer.concat([c.update(data), c.final()]));
  },
  // node:crypto exposes no standalone Poly1305; its Poly1305 is exercised
  // through the AEAD vectors.
};

export function nodeCrypto(): Crypto {
  return new Crypto(nodePrimitives);
}
