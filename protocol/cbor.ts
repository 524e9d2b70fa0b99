/**
 * CBOR codec around cbor-x, configured so the bytes are identical on every
 * runtime (tagUint8Array off: byte strings are plain major type 2, no tag 64;
 * no records extension; minimal map headers).
 *
 * Decoding is strict: we accept exactly one encoding of a value, the one our
 * encoder makes. After decoding we re-encode and compare; any other spelling
 * (indefinite lengths, over-long integer heads, floats standing in for ints,
 * tags, trailing bytes) is a KagiError, never a cbor-x exception.
 */
import { Encoder } from 'cbor-x';
import { KagiError } from './errors.js';
import { concat, equalCT } from './bytes.js';

const codec = new Encoder({
  tagUint8Array: false,
  useRecords: false,
  variableMapSize: true,
  mapsAsObjects: true,
});

/** Encode to a fresh Uint8Array (cbor-x reuses its output buffer). */
export function encode(value: unknown): Uint8Array {
  const b = codec.encode(value);
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
}

/** Decode exactly one canonical CBOR item filling `bytes`. */
export function decodeStrict(bytes: Uint8Array, maxBytes: number): unknown {
  if (!(bytes instanceof Uint8Array)) throw new KagiError('decode', 'input is not bytes');
  if (bytes.length > maxBytes) throw new KagiError('size', `message of ${bytes.length} bytes exceeds ${maxBytes}`);
  let value: unknown;
  try {
    value = codec.decode(bytes);
  } catch (e) {
    // cbor-x throws plain Errors (and RangeError on deep nesting): wrap them.
    throw new KagiError('decode', (e as Error)?.message ?? 'malformed CBOR');
  }
  let again: Uint8Array;
  try {
    again = codec.encode(value);
  } catch {
    throw new KagiError('noncanonical', 'value cannot be re-encoded');
  }
  // Not secret; equalCT is simply our one byte comparison.
  if (!equalCT(again, bytes)) throw new KagiError('noncanonical', 'not the canonical encoding');
  return value;
}

/** Bytes of the CBOR head for a byte string of length n (RFC 8949 §3). */
function byteStringHeadLength(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/**
 * Encode an array whose last element is a byte string (the ciphertext), so
 * that everything before it, the header, can be the AEAD's associated data:
 * result = header || cbor(bytes). The header is computed before sealing.
 */
export function encodeHeader(fields: unknown[]): Uint8Array {
  // cbor([...fields, h'']) ends in 0x40 (empty byte string): drop it.
  const withEmpty = encode([...fields, new Uint8Array(0)]);
  return withEmpty.subarray(0, withEmpty.length - 1);
}

export function appendBytes(header: Uint8Array, payload: Uint8Array): Uint8Array {
  return concat(header, encode(payload));
}

/** The header bytes as received: everything before the final byte string. */
export function receivedHeader(bytes: Uint8Array, last: Uint8Array): Uint8Array {
  return bytes.subarray(0, bytes.length - byteStringHeadLength(last.length) - last.length);
}

// Field checks shared by every decoder; each throws KagiError('field').

export function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

export function expectUint(v: unknown, max: number, name: string): number {
  if (!isUint(v, max)) throw new KagiError('field', `${name} must be an integer 0..${max}`);
  return v;
}

export function expectString(v: unknown, pattern: RegExp, name: string): string {
  if (typeof v !== 'string' || !pattern.test(v)) throw new KagiError('field', `${name} is not a valid id`);
  return v;
}

export function expectBytes(v: unknown, name: string, min: number, max: number): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new KagiError('field', `${name} must be a byte string`);
  if (v.length > max) throw new KagiError('size', `${name} of ${v.length} bytes exceeds ${max}`);
  if (v.length < min) throw new KagiError('field', `${name} shorter than ${min} bytes`);
  // A plain Uint8Array view: no Buffer escapes protocol/ even on Node.
  return new Uint8Array(v.buffer, v.byteOffset, v.length);
}

export function expectArray(v: unknown, length: number, name: string): unknown[] {
  if (!Array.isArray(v)) throw new KagiError('decode', `${name} is not an array`);
  if (v.length !== length) throw new KagiError('decode', `${name} has ${v.length} fields, expected ${length}`);
  return v;
}
