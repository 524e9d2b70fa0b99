/**
 * node:crypto backend: what servers and Node agents use (OpenSSL X25519 is
 * ~15x faster than portable JS here). Same interface, same vectors.
 */
import * as nc from 'node:crypto';
import type { CryptoPrimitives } from '../../protocol/crypto/backend.js';
import { Crypto } from '../../protocol/crypto/backend.js';

// DER prefixes that wrap a raw 32-byte X25519 key (RFC 8410).
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

function privateKey(scalar: Uint8Array): nc.KeyObject {
  return nc.createPrivateKey({ key: Buffer.concat([PKCS8_X25519, scalar]), format: 'der', type: 'pkcs8' });
}

function publicKey(u: Uint8Array): nc.KeyObject {
  return nc.createPublicKey({ key: Buffer.concat([SPKI_X25519, u]), format: 'der', type: 'spki' });
}

const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length);

export const nodePrimitives: CryptoPrimitives = {
  name: 'node',
  randomBytes: (n) => u8(nc.randomBytes(n)),
  x25519(k, u) {
    try {
      return u8(nc.diffieHellman({ privateKey: privateKey(k), publicKey: publicKey(u) }));
    } catch {
      // OpenSSL refuses to return an all-zero X25519 result (the only way
      // derive fails for well-sized inputs); report it as zeros so the
      // facade's one check decides, exactly as for the portable backend.
      return new Uint8Array(32);
    }
  },
  x25519Base(k) {
    const spki = nc.createPublicKey(privateKey(k)).export({ format: 'der', type: 'spki' });
    return u8(spki.subarray(SPKI_X25519.length));
  },
  sha256: (d) => u8(nc.createHash('sha256').update(d).digest()),
  hmacSha256: (k, d) => u8(nc.createHmac('sha256', k).update(d).digest()),
  hkdf: (ikm, salt, info, length) => new Uint8Array(nc.hkdfSync('sha256', ikm, salt, info, length)),
  aeadSeal(key, nonce, pt, aad) {
    const c = nc.createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: pt.length });
    return u8(Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]));
  },
  aeadOpen(key, nonce, sealed, aad) {
    const ctLen = sealed.length - 16;
    const d = nc.createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    d.setAAD(aad, { plaintextLength: ctLen });
    d.setAuthTag(sealed.subarray(ctLen));
    const out = d.update(sealed.subarray(0, ctLen));
    try {
      return u8(Buffer.concat([out, d.final()]));
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
