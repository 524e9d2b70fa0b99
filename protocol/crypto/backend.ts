/**
 * The crypto a kagi side needs, behind one interface with two
 * implementations held to the same vectors:
 *  - portable (@stablelib): what boards run; no host crypto required.
 *  - node (node:crypto, in runtime/node/): what servers and Node agents run.
 *
 * Backends do the arithmetic only. Length checks, the all-zero X25519 check
 * and HKDF-Expand live here, once, so both backends behave identically.
 */
import { KagiError } from '../errors.js';
import { concat, isAllZeroCT, wipe } from '../bytes.js';

export const X25519_KEY_LENGTH = 32;
export const AEAD_KEY_LENGTH = 32;
export const AEAD_NONCE_LENGTH = 12;
export const AEAD_TAG_LENGTH = 16;
export const SHA256_LENGTH = 32;
/** RFC 5869 §2.3: L <= 255 * HashLen. */
export const HKDF_MAX_OUTPUT = 255 * SHA256_LENGTH;

/** What each backend implements. Inputs are already length-checked. */
export interface CryptoPrimitives {
  readonly name: string;
  randomBytes(n: number): Uint8Array;
  /** RFC 7748 X25519(k, u); may return all zeros (checked by the caller). */
  x25519(scalar: Uint8Array, u: Uint8Array): Uint8Array;
  x25519Base(scalar: Uint8Array): Uint8Array;
  sha256(data: Uint8Array): Uint8Array;
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array;
  /** RFC 5869 Extract + Expand in one call. */
  hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  /** RFC 8439 §2.8: returns ciphertext || 16-byte tag. */
  aeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  /** null when authentication fails. */
  aeadOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null;
  /** RFC 8439 §2.4 keystream XOR starting at block `counter`. */
  chacha20Xor(key: Uint8Array, nonce: Uint8Array, counter: number, data: Uint8Array): Uint8Array;
  /** RFC 8439 §2.5 one-time authenticator; absent where the host has none. */
  poly1305?(key: Uint8Array, msg: Uint8Array): Uint8Array;
  /**
   * A secret key that will be used for many X25519 operations (a party's
   * own static key): the backend may prepare it once (node: the parsed key
   * object, which otherwise costs as much as the DH itself). Held by array
   * identity until the array is garbage; its content must not change.
   */
  holdStatic?(scalar: Uint8Array): void;
}

function need(what: string, b: Uint8Array, n: number): void {
  if (!(b instanceof Uint8Array) || b.length !== n) {
    throw new KagiError('key', `${what} must be ${n} bytes`);
  }
}

/**
 * A checked facade over a backend: the only thing the rest of kagi calls.
 */
export class Crypto {
  constructor(readonly backend: CryptoPrimitives) {}

  get name(): string {
    return this.backend.name;
  }

  randomBytes(n: number): Uint8Array {
    return this.backend.randomBytes(n);
  }

  generateKeyPair(): { secretKey: Uint8Array; publicKey: Uint8Array } {
    const secretKey = this.randomBytes(X25519_KEY_LENGTH);
    return { secretKey, publicKey: this.publicKey(secretKey) };
  }

  publicKey(secretKey: Uint8Array): Uint8Array {
    need('X25519 secret key', secretKey, X25519_KEY_LENGTH);
    return this.backend.x25519Base(secretKey);
  }

  /** Raw X25519, no zero check: for vectors and iterated tests only. */
  x25519Raw(scalar: Uint8Array, u: Uint8Array): Uint8Array {
    need('X25519 scalar', scalar, X25519_KEY_LENGTH);
    need('X25519 u-coordinate', u, X25519_KEY_LENGTH);
    return this.backend.x25519(scalar, u);
  }

  /**
   * `secretKey` is this party's static key, used for every request it
   * seals or opens: let the backend prepare it once. The array must not be
   * changed afterwards (static keys are never wiped while their party runs).
   */
  holdStaticKey(secretKey: Uint8Array): void {
    need('X25519 secret key', secretKey, X25519_KEY_LENGTH);
    this.backend.holdStatic?.(secretKey);
  }

  /** X25519 Diffie-Hellman; rejects an all-zero result (low-order peer key). */
  dh(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
    const out = this.x25519Raw(secretKey, publicKey);
    if (isAllZeroCT(out)) throw new KagiError('key', 'X25519 produced an all-zero shared secret');
    return out;
  }

  sha256(data: Uint8Array): Uint8Array {
    return this.backend.sha256(data);
  }

  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
    return this.backend.hmacSha256(key, data);
  }

  hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
    checkHkdfLength(length);
    return this.backend.hkdf(ikm, salt, info, length);
  }

  /** RFC 5869 §2.2. An empty salt is HashLen zeros, which HMAC pads to anyway. */
  hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Uint8Array {
    return this.backend.hmacSha256(salt, ikm);
  }

  /** RFC 5869 §2.3, over the backend's HMAC (HPKE needs Expand alone). */
  hkdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array {
    checkHkdfLength(length);
    const out = new Uint8Array(length);
    let t: Uint8Array = new Uint8Array(0);
    for (let i = 1, o = 0; o < length; i++) {
      const next = this.backend.hmacSha256(prk, concat(t, info, Uint8Array.of(i)));
      wipe(t);
      t = next;
      out.set(t.subarray(0, Math.min(t.length, length - o)), o);
      o += t.length;
    }
    wipe(t);
    return out;
  }

  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    need('AEAD key', key, AEAD_KEY_LENGTH);
    need('AEAD nonce', nonce, AEAD_NONCE_LENGTH);
    return this.backend.aeadSeal(key, nonce, plaintext, aad);
  }

  /** null when the ciphertext, nonce or AAD was tampered with. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null {
    need('AEAD key', key, AEAD_KEY_LENGTH);
    need('AEAD nonce', nonce, AEAD_NONCE_LENGTH);
    if (sealed.length < AEAD_TAG_LENGTH) return null;
    return this.backend.aeadOpen(key, nonce, sealed, aad);
  }
}

function checkHkdfLength(length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > HKDF_MAX_OUTPUT) {
    throw new KagiError('argument', `HKDF output length ${length} outside 0..${HKDF_MAX_OUTPUT}`);
  }
}
