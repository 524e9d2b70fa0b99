/**
 * An agent's static secrets kept across restarts (decision 124): its own
 * X25519 public key and its static–static secrets with the broker and the
 * services. They are the same at every boot, and computing them again cost
 * four X25519 operations per restart: about 0.2 ms on Node, and at ~65 ms
 * each a quarter of a second of every board's boot.
 *
 * They are kept sealed under a key derived from the device's own static
 * key, so the store they sit in (the tickets file, a board's host storage)
 * gives nothing without the device file: what they would let someone do
 * (authenticate as the device to those peers) the static key already lets
 * them. The seal also authenticates them: a blob that does not open (a
 * corrupted file, another device's, an older format) is ignored and the
 * secrets are computed again, never trusted.
 *
 *   key  = HKDF(static key, salt = 16 random bytes, info = "kagi/v1 static secrets")
 *   blob = salt || ChaCha20-Poly1305(key, nonce = 0, CBOR [1, publicKey, [[peer, secret], ...]], aad = info)
 *
 * A fresh salt per seal makes a fresh key, used once: the zero nonce never
 * repeats under a key.
 */
import type { Crypto, KnownStatics } from './crypto/backend.js';
import { AEAD_NONCE_LENGTH, X25519_KEY_LENGTH } from './crypto/backend.js';
import { decodeStrict, encode, expectArray, expectBytes, expectUint } from './cbor.js';
import { concat, utf8, wipe } from './bytes.js';

const INFO = utf8('kagi/v1 static secrets');
const SALT_LENGTH = 16;
const VERSION = 1;
/** The broker, auth, config and keys: an agent keeps no more peers than that (and some room). */
export const MAX_STATIC_PEERS = 8;
/** The largest plaintext: version, public key, MAX_STATIC_PEERS pairs, with their CBOR heads. */
const MAX_PLAINTEXT = 16 + (2 + X25519_KEY_LENGTH) + MAX_STATIC_PEERS * (1 + 2 * (2 + X25519_KEY_LENGTH));

function keyFor(c: Crypto, secretKey: Uint8Array, salt: Uint8Array): Uint8Array {
  return c.hkdf(secretKey, salt, INFO, 32);
}

/** Seal what `secretKey`'s holder computed (at most MAX_STATIC_PEERS secrets; the rest are left out). */
export function sealStaticSecrets(c: Crypto, secretKey: Uint8Array, s: KnownStatics): Uint8Array {
  const salt = c.randomBytes(SALT_LENGTH);
  const key = keyFor(c, secretKey, salt);
  const pt = encode([VERSION, s.publicKey, s.shared.slice(0, MAX_STATIC_PEERS).map((x) => [x.peer, x.secret])]);
  const sealed = c.seal(key, new Uint8Array(AEAD_NONCE_LENGTH), pt, INFO);
  wipe(key, pt);
  return concat(salt, sealed);
}

/** What the blob holds, if it was sealed under `secretKey` in this format; undefined otherwise (compute again). */
export function openStaticSecrets(c: Crypto, secretKey: Uint8Array, blob: Uint8Array): KnownStatics | undefined {
  if (blob.length <= SALT_LENGTH) return undefined;
  const key = keyFor(c, secretKey, blob.subarray(0, SALT_LENGTH));
  const pt = c.open(key, new Uint8Array(AEAD_NONCE_LENGTH), blob.subarray(SALT_LENGTH), INFO);
  wipe(key);
  if (!pt) return undefined;
  try {
    const [version, publicKey, pairs] = expectArray(decodeStrict(pt, MAX_PLAINTEXT), 3, 'static secrets');
    if (expectUint(version, 2 ** 32 - 1, 'version') !== VERSION || !Array.isArray(pairs) || pairs.length > MAX_STATIC_PEERS) return undefined;
    // Copies: what was decoded may view `pt`, which is wiped below.
    return {
      publicKey: expectBytes(publicKey, 'public key', X25519_KEY_LENGTH, X25519_KEY_LENGTH).slice(),
      shared: pairs.map((p) => {
        const [peer, secret] = expectArray(p, 2, 'pair');
        return { peer: expectBytes(peer, 'peer', X25519_KEY_LENGTH, X25519_KEY_LENGTH).slice(), secret: expectBytes(secret, 'secret', X25519_KEY_LENGTH, X25519_KEY_LENGTH).slice() };
      }),
    };
  } catch {
    return undefined; // authenticated, so ours, but not a shape we know: compute again
  } finally {
    wipe(pt);
  }
}
