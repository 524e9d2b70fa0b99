/**
 * CBOR codec around cbor-x, configured so the bytes are identical on every
 * runtime (tagUint8Array off: byte strings are plain major type 2, no tag 64;
 * no records extension; minimal map headers).
 *
 * Decoding is strict: we accept exactly one encoding of a value, the one our
 * encoder makes. After decoding we re-encode and compare; any other spelling
 * (indefinite lengths, over-long integer heads, floats standing in for ints,
 * tags, trailing bytes) is a KagiError, never a cbor-x exception.
 *
 * The data plane's messages end in one large byte string (a frame's
 * ciphertext, a stream item's or a port frame's data). Encoding copies
 * that byte string once, into the output, and never through cbor-x's
 * buffer; the canonical check re-encodes everything but it and compares
 * the rest (docs/decisions.md, 88). Both give exactly the bytes the
 * whole re-encoding would.
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
  return concat(...encodeParts(value));
}

/**
 * The encoding of `value` in pieces to concatenate: [everything before the
 * last byte string, its head, the byte string itself] when the encoding
 * ends in a byte string (the byte string is not copied here), else [all of
 * it]. Lets a caller put its own prefix in front with one copy.
 */
export function encodeParts(value: unknown): Uint8Array[] {
  const split = splitTail(value);
  if (split === null) return [copyOut(codec.encode(value), 0)];
  // The empty byte string in the tail's place encodes as 0x40, last: drop it.
  return [copyOut(codec.encode(split.value), 1), byteStringHead(split.tail.length), split.tail];
}

/** A copy of cbor-x's output (its buffer is reused), without the last `drop` bytes; a plain Uint8Array (Buffer#slice would be a view). */
function copyOut(b: Uint8Array, drop: number): Uint8Array {
  const out = new Uint8Array(b.length - drop);
  out.set(b.subarray(0, out.length));
  return out;
}

const EMPTY = new Uint8Array(0);
/** Property names JS orders before all others (array indices): with one, key order is not insertion order. */
const INDEX_KEY = /^(?:0|[1-9][0-9]*)$/;

/**
 * The value with its last-encoded leaf, if that is a byte string, replaced
 * by an empty one (and that byte string); null when the encoding does not
 * end in a byte string, or when we cannot be sure what is encoded last (a
 * map with an index-like key, which JS iterates first).
 */
function splitTail(v: unknown): { value: unknown; tail: Uint8Array } | null {
  if (v instanceof Uint8Array) return { value: EMPTY, tail: v };
  if (Array.isArray(v)) {
    if (v.length === 0) return null;
    const inner = splitTail(v[v.length - 1]);
    if (!inner) return null;
    const copy = v.slice();
    copy[copy.length - 1] = inner.value;
    return { value: copy, tail: inner.tail };
  }
  if (typeof v !== 'object' || v === null || Object.getPrototypeOf(v) !== Object.prototype) return null;
  const keys = Object.keys(v);
  if (keys.length === 0 || keys.some((k) => INDEX_KEY.test(k))) return null;
  const last = keys[keys.length - 1]!;
  const inner = splitTail((v as Record<string, unknown>)[last]);
  if (!inner) return null;
  return { value: { ...v, [last]: inner.value }, tail: inner.tail };
}

/** Decode exactly one canonical CBOR item filling `bytes`. */
export function decodeStrict(bytes: Uint8Array, maxBytes: number): unknown {
  if (!(bytes instanceof Uint8Array)) throw new KagiError('decode', 'input is not bytes');
  if (bytes.length > maxBytes) throw new KagiError('size', `message of ${bytes.length} bytes exceeds ${maxBytes}`);
  checkShape(bytes);
  let value: unknown;
  try {
    value = codec.decode(bytes);
  } catch (e) {
    // cbor-x throws plain Errors (and RangeError on deep nesting): wrap them.
    throw new KagiError('decode', (e as Error)?.message ?? 'malformed CBOR');
  }
  if (!isCanonical(value, bytes)) throw new KagiError('noncanonical', 'not the canonical encoding');
  return value;
}

/** Does `bytes` equal the encoding of `value` (which it decoded to)? */
function isCanonical(value: unknown, bytes: Uint8Array): boolean {
  const split = splitTail(value);
  // The fast check needs the tail to be the input's own last bytes (cbor-x
  // decodes byte strings as views): then they are equal by identity.
  if (split && split.tail.buffer === bytes.buffer && split.tail.byteOffset + split.tail.length === bytes.byteOffset + bytes.length) {
    const withEmpty = reencode(split.value);
    const prefix = withEmpty.length - 1;
    const head = byteStringHead(split.tail.length);
    if (prefix + head.length + split.tail.length !== bytes.length) return false;
    // Not secret; equalCT is simply our one byte comparison (a few dozen bytes here).
    return equalCT(withEmpty.subarray(0, prefix), bytes.subarray(0, prefix)) && equalCT(head, bytes.subarray(prefix, prefix + head.length));
  }
  return equalCT(reencode(value), bytes);
}

function reencode(value: unknown): Uint8Array {
  try {
    return codec.encode(value);
  } catch {
    throw new KagiError('noncanonical', 'value cannot be re-encoded');
  }
}

/** Nesting of arrays and maps our messages never exceed (a body's lists of maps are 4 deep). */
export const MAX_CBOR_DEPTH = 16;

/**
 * One linear pass over the heads (RFC 8949 §3) before cbor-x sees the bytes:
 * exactly one item, definite lengths, no tags, no reserved heads, no count
 * larger than the bytes left, at most MAX_CBOR_DEPTH deep. cbor-x decodes
 * 1,000 bytes of nested maps (0xa5 0xa5 …) in about a millisecond and a
 * stack overflow; this refuses them in microseconds (issue 23: a flood of
 * such garbage held the config server). Anything it lets through is still
 * decoded and checked for canonical form.
 */
function checkShape(b: Uint8Array): void {
  const bad = (why: string) => new KagiError('decode', `malformed CBOR: ${why}`);
  const open: number[] = []; // items still to read in each enclosing array or map
  let i = 0;
  let items = 1;
  while (items > 0 || open.length > 0) {
    if (items === 0) {
      items = open.pop()!;
      continue;
    }
    items--;
    if (i >= b.length) throw bad('truncated');
    const major = b[i]! >> 5;
    const info = b[i]! & 0x1f;
    i++;
    // Indefinite lengths are CBOR, only not ours (the canonical check's code).
    if (info === 31 && major >= 2 && major <= 5) throw new KagiError('noncanonical', 'indefinite length');
    if (info > 27) throw bad('reserved head');
    let n = info;
    if (info >= 24) {
      const len = 1 << (info - 24);
      if (i + len > b.length) throw bad('truncated');
      n = 0;
      // 8-byte heads: only their size matters here (anything past 2^53 is too large anyway).
      for (let k = 0; k < len; k++) n = n * 256 + b[i + k]!;
      i += len;
    }
    const left = b.length - i;
    if (major === 2 || major === 3) {
      if (n > left) throw bad('string longer than the message');
      i += n;
    } else if (major === 4 || major === 5) {
      const count = major === 5 ? 2 * n : n;
      if (count > left) throw bad('more items than bytes');
      if (count === 0) continue;
      if (open.length >= MAX_CBOR_DEPTH) throw bad(`nested deeper than ${MAX_CBOR_DEPTH}`);
      open.push(items);
      items = count;
    } else if (major === 6) {
      throw new KagiError('noncanonical', 'tagged item');
    }
  }
  if (i !== b.length) throw bad('trailing bytes');
}

/** Bytes of the CBOR head for a byte string of length n (RFC 8949 §3). */
function byteStringHeadLength(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** The shortest CBOR encoding of an unsigned integer n < 2^32 (major type 0): the one cbor-x writes. */
export function uintHead(n: number): Uint8Array {
  if (n < 24) return Uint8Array.of(n);
  if (n < 0x100) return Uint8Array.of(0x18, n);
  if (n < 0x10000) return Uint8Array.of(0x19, n >>> 8, n & 0xff);
  return Uint8Array.of(0x1a, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/** The shortest CBOR head for a byte string of length n < 2^32 (major type 2): the one cbor-x writes. */
export function byteStringHead(n: number): Uint8Array {
  if (n < 24) return Uint8Array.of(0x40 + n);
  if (n < 0x100) return Uint8Array.of(0x58, n);
  if (n < 0x10000) return Uint8Array.of(0x59, n >>> 8, n & 0xff);
  return Uint8Array.of(0x5a, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/**
 * Encode an array whose last element is a byte string (the ciphertext), so
 * that everything before it, the header, can be the AEAD's associated data:
 * result = header || cbor(bytes). The header is computed before sealing.
 */
export function encodeHeader(fields: unknown[]): Uint8Array {
  // cbor([...fields, h'']) ends in 0x40 (empty byte string): its first part is the rest.
  return encodeParts([...fields, EMPTY])[0]!;
}

/** header || cbor(payload), the payload copied once. */
export function appendBytes(header: Uint8Array, payload: Uint8Array): Uint8Array {
  return concat(header, byteStringHead(payload.length), payload);
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
