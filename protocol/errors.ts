/**
 * The one error class of the protocol layer.
 *
 * Bytes from the network that fail any check become a KagiError with a code,
 * never another exception: callers at the edge drop, count and log them by
 * code. Programmer misuse (wrong key length, sealing past the counter limit)
 * is a KagiError too, with its own code, so nothing else escapes protocol/.
 */
export type KagiErrorCode =
  | 'decode' // not well-formed CBOR, wrong arity, or trailing bytes
  | 'version' // envelope/frame version this build does not speak
  | 'type' // unknown message type
  | 'field' // a field has the wrong type or value
  | 'size' // a field or the whole message exceeds its limit
  | 'noncanonical' // well-formed CBOR, but not the one encoding we accept
  | 'auth' // AEAD authentication failed
  | 'replay' // sequence or counter already seen, or too old
  | 'stale' // a request issued too long ago, or ahead of our clock
  | 'unexpected' // a reply to no request of ours, or from the wrong peer
  | 'epoch' // VPN frame of an epoch we do not (or no longer) hold
  | 'key' // bad key material: length, or an all-zero X25519 result
  | 'exhausted' // a nonce counter reached its limit: rekey
  | 'profile' // a board profile that does not fit its schema
  | 'argument'; // local misuse of an API

export class KagiError extends Error {
  override readonly name = 'KagiError';
  constructor(
    readonly code: KagiErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** True for a KagiError, optionally of one code. */
export function isKagiError(e: unknown, code?: KagiErrorCode): e is KagiError {
  return e instanceof KagiError && (code === undefined || e.code === code);
}
