/**
 * Portable backend: pure JavaScript (@stablelib), for boards and any runtime
 * without host crypto. Randomness comes from the platform: the caller passes
 * a getRandomValues-style function (a board's hardware RNG via its bridge).
 */
import { scalarMult, scalarMultBase } from '@stablelib/x25519';
import { ChaCha20Poly1305 } from '@stablelib/chacha20poly1305';
import { streamXOR } from '@stablelib/chacha';
import { oneTimeAuth } from '@stablelib/poly1305';
import { HKDF } from '@stablelib/hkdf';
import { hmac } from '@stablelib/hmac';
import { SHA256, hash as sha256 } from '@stablelib/sha256';
import type { CryptoPrimitives } from './backend.js';
import { Crypto } from './backend.js';

export type RandomFill = (buf: Uint8Array) => void;

/** Default random source: the host's Web Crypto getRandomValues. */
function hostRandom(buf: Uint8Array): void {
  const c = (globalThis as { crypto?: { getRandomValues?(b: Uint8Array): Uint8Array } }).crypto;
  if (!c?.getRandomValues) throw new Error('portable crypto: no random source (pass one, or provide crypto.getRandomValues)');
  // getRandomValues fills at most 65,536 bytes per call.
  for (let o = 0; o < buf.length; o += 65_536) c.getRandomValues(buf.subarray(o, o + 65_536));
}

export function portablePrimitives(fill: RandomFill = hostRandom): CryptoPrimitives {
  return {
    name: 'portable',
    randomBytes(n) {
      const b = new Uint8Array(n);
      fill(b);
      return b;
    },
    x25519: (k, u) => scalarMult(k, u),
    x25519Base: (k) => scalarMultBase(k),
    sha256: (d) => sha256(d),
    hmacSha256: (k, d) => hmac(SHA256, k, d),
    hkdf: (ikm, salt, info, length) => new HKDF(SHA256, ikm, salt, info).expand(length),
    aeadSeal: (key, nonce, pt, aad) => new ChaCha20Poly1305(key).seal(nonce, pt, aad),
    aeadOpen: (key, nonce, sealed, aad) => new ChaCha20Poly1305(key).open(nonce, sealed, aad),
    chacha20Xor(key, nonce, counter, data) {
      // stablelib's in-place counter layout is counter (LE32) || nonce: RFC 8439 §2.3.
      const n16 = new Uint8Array(16);
      new DataView(n16.buffer).setUint32(0, counter, true);
      n16.set(nonce, 4);
      return streamXOR(key, n16, data, new Uint8Array(data.length), 4);
    },
    poly1305: (key, msg) => oneTimeAuth(key, msg),
  };
}

export function portableCrypto(fill?: RandomFill): Crypto {
  return new Crypto(portablePrimitives(fill));
}
