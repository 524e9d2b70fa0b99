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
import { concat, fromHex, isAllZeroCT, toHex, wipe } from '../bytes.js';

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
  /**
   * RFC 7748 X25519(k, u); may return all zeros (checked by the caller).
   * `once`: u is an ephemeral key that will not come again (an HPKE enc),
   * so a backend that caches parsed peer keys should not keep it.
   */
  x25519(scalar: Uint8Array, u: Uint8Array, once?: boolean): Uint8Array;
  x25519Base(scalar: Uint8Array): Uint8Array;
  sha256(data: Uint8Array): Uint8Array;
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array;
  /** RFC 5869 Extract + Expand in one call. */
  hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  /** RFC 8439 §2.8: returns ciphertext || 16-byte tag. */
  aeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  /** null when authentication fails. */
  aeadOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null;
  /**
   * prefix || aeadSeal(...) in one allocation (a VPN frame: its header,
   * then the ciphertext); absent where the backend cannot do better than
   * concatenating.
   */
  aeadSealAfter?(prefix: Uint8Array, key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
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

/**
 * Static–static shared secrets kept per held static key (see staticDh): a
 * bound on how many peers' secrets one party keeps. 16,384 covers a fleet
 * of that many devices at a service (about 2.5 MB at the bound); beyond it
 * the least recently used is wiped and computed again when next needed.
 */
export const STATIC_DH_CACHE = 16_384;

/**
 * What an earlier run of the same party computed for its static key: the
 * public key and some static–static secrets, each by the peer's public
 * key. Secrets: kept only sealed under the static key (static-secrets.ts).
 */
export interface KnownStatics {
  publicKey: Uint8Array;
  shared: { peer: Uint8Array; secret: Uint8Array }[];
}

/** What holdStaticKey keeps for one of our own static keys. */
interface HeldStatic {
  publicKey: Uint8Array;
  /** X25519(ours, peer) by the peer's public key (hex), least recently used first. */
  shared: Map<string, Uint8Array>;
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
  /** Our own static keys, by array identity (holdStaticKey). */
  private readonly statics = new WeakMap<Uint8Array, HeldStatic>();

  /** How many peers' static–static secrets each held key keeps. */
  private readonly staticDhBound: number;

  constructor(readonly backend: CryptoPrimitives, o: { staticDhCache?: number } = {}) {
    this.staticDhBound = o.staticDhCache ?? STATIC_DH_CACHE;
  }

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
    // HPKE's auth mode needs our own public key at every seal and open.
    const held = this.statics.get(secretKey);
    return held ? held.publicKey.slice() : this.backend.x25519Base(secretKey);
  }

  /** Raw X25519, no zero check: for vectors and iterated tests only (and dh, which adds it). `once`: see CryptoPrimitives.x25519. */
  x25519Raw(scalar: Uint8Array, u: Uint8Array, once = false): Uint8Array {
    need('X25519 scalar', scalar, X25519_KEY_LENGTH);
    need('X25519 u-coordinate', u, X25519_KEY_LENGTH);
    return this.backend.x25519(scalar, u, once);
  }

  /**
   * `secretKey` is this party's static key, used for every request it
   * seals or opens: let the backend prepare it once. The array must not be
   * changed afterwards (static keys are never wiped while their party runs).
   * `known`: what an earlier run computed for it (its public key, static–
   * static secrets), taken instead of computed; only from
   * openStaticSecrets, which authenticates it under this key. Ignored when
   * the key is already held.
   */
  holdStaticKey(secretKey: Uint8Array, known?: KnownStatics): void {
    need('X25519 secret key', secretKey, X25519_KEY_LENGTH);
    if (this.statics.has(secretKey)) return;
    this.backend.holdStatic?.(secretKey);
    // What an earlier run computed for this key (kept sealed under it, see
    // static-secrets.ts): no X25519 for the public key or those peers.
    const shared = new Map<string, Uint8Array>();
    for (const { peer, secret } of known?.shared ?? []) {
      need('X25519 u-coordinate', peer, X25519_KEY_LENGTH);
      need('X25519 shared secret', secret, X25519_KEY_LENGTH);
      if (shared.size < this.staticDhBound) shared.set(toHex(peer), secret.slice());
    }
    if (known) need('X25519 public key', known.publicKey, X25519_KEY_LENGTH);
    this.statics.set(secretKey, { publicKey: known ? known.publicKey.slice() : this.backend.x25519Base(secretKey), shared });
  }

  /**
   * What holdStaticKey keeps for `secretKey` (copies): its public key and
   * the static–static secrets with `peers` that it holds (all when absent).
   * undefined when the key is not held.
   */
  heldStatics(secretKey: Uint8Array, peers?: Uint8Array[]): KnownStatics | undefined {
    const held = this.statics.get(secretKey);
    if (!held) return undefined;
    const wanted = peers?.map(toHex);
    const shared = [...held.shared].filter(([peer]) => !wanted || wanted.includes(peer)).map(([peer, secret]) => ({ peer: fromHex(peer), secret: secret.slice() }));
    return { publicKey: held.publicKey.slice(), shared };
  }

  /** X25519 Diffie-Hellman; rejects an all-zero result (low-order peer key). */
  dh(secretKey: Uint8Array, publicKey: Uint8Array, once = false): Uint8Array {
    const out = this.x25519Raw(secretKey, publicKey, once);
    if (isAllZeroCT(out)) throw new KagiError('key', 'X25519 produced an all-zero shared secret');
    return out;
  }

  /**
   * X25519 of two static keys (HPKE's auth-mode DH, the CONNECT key): the
   * same value for every message between the same two parties, so when
   * `secretKey` is a held static key it is computed once per peer and kept
   * (decision 76) — half the X25519 of every sealed request, and on a
   * board half of ~65 ms. The kept secret is no more than the held static
   * key already gives; the cache is bounded and wipes what it drops. The
   * caller gets a copy it may wipe.
   */
  staticDh(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
    const held = this.statics.get(secretKey);
    if (!held) return this.dh(secretKey, publicKey);
    need('X25519 u-coordinate', publicKey, X25519_KEY_LENGTH);
    const peer = toHex(publicKey);
    let shared = held.shared.get(peer);
    if (shared) {
      held.shared.delete(peer); // most recently used goes last
    } else {
      shared = this.dh(secretKey, publicKey);
      if (held.shared.size >= this.staticDhBound) {
        const [oldest, secret] = held.shared.entries().next().value as [string, Uint8Array];
        held.shared.delete(oldest);
        wipe(secret);
      }
    }
    held.shared.set(peer, shared);
    return shared.slice();
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

  /** prefix || seal(key, nonce, plaintext, aad): the same bytes, the ciphertext written once into the result. */
  sealAfter(prefix: Uint8Array, key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    need('AEAD key', key, AEAD_KEY_LENGTH);
    need('AEAD nonce', nonce, AEAD_NONCE_LENGTH);
    if (this.backend.aeadSealAfter) return this.backend.aeadSealAfter(prefix, key, nonce, plaintext, aad);
    return concat(prefix, this.backend.aeadSeal(key, nonce, plaintext, aad));
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
