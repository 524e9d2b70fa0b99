/** Small Uint8Array helpers. Uint8Array only: no Buffer in protocol/. */

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Constant-time equality for secrets (length is not secret). */
export function equalCT(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/** Constant-time all-zero test (RFC 9180 §7.1.4: X25519 output check). */
export function isAllZeroCT(a: Uint8Array): boolean {
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]!;
  return d === 0;
}

/** I2OSP (RFC 8017 §4.1) for n < 2^53, big-endian into `len` bytes. */
export function i2osp(n: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let v = n;
  for (let i = len - 1; i >= 0 && v > 0; i--) {
    out[i] = v % 256;
    v = Math.floor(v / 256);
  }
  return out;
}

// Board runtimes (QuickJS, XS) may have no TextEncoder: encode by hand there.
const te = typeof TextEncoder === 'function' ? new TextEncoder() : null;
export function utf8(s: string): Uint8Array {
  return te ? te.encode(s) : utf8Portable(s);
}

/** UTF-8 of a JS string without TextEncoder; lone surrogates become U+FFFD, as TextEncoder does. */
export function utf8Portable(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

/** Char codes per call to String.fromCharCode (well under any engine's argument limit). */
const HEX_CHUNK = 8192;

/**
 * Lower-case hex. Built from char codes in one String.fromCharCode per
 * chunk: a string grown by `+=` is a rope in V8, one node per piece, and
 * a 32-byte key kept as a Map key that way held 32 leaves and 31 rope
 * nodes, about 2.5 KiB instead of 80 bytes (bench:idle's heap snapshots:
 * 4.7 KiB per idle device, in the answers and replay books). Branch-free
 * in the bytes (keys are written out with it): a nibble n becomes
 * '0'+n, or 'a'+n−10 when n > 9, chosen by the sign of 9 − n.
 */
export function toHex(b: Uint8Array): string {
  let s = '';
  for (let at = 0; at < b.length; at += HEX_CHUNK / 2) {
    const part = b.subarray(at, at + HEX_CHUNK / 2);
    const codes = new Array<number>(part.length * 2);
    for (let i = 0; i < part.length; i++) {
      const hi = part[i]! >> 4;
      const lo = part[i]! & 15;
      codes[2 * i] = 48 + hi + (((9 - hi) >> 31) & 39);
      codes[2 * i + 1] = 48 + lo + (((9 - lo) >> 31) & 39);
    }
    s += String.fromCharCode(...codes);
  }
  return s;
}

/**
 * Hex (either case) to bytes; TypeError for anything else. Keys are read
 * with it (device files, kept secrets), so it is branch-free in the
 * characters, as libsodium's sodium_hex2bin: a digit's mask is set when
 * c ^ '0' is below 10, a letter's when (c & ~32) − 55 is in 10..15, and a
 * character with neither marks the whole input bad, judged once at the
 * end. One char code at a time, no substring: parseInt over slices was
 * 12 µs for an agent's kept secrets at every start (bench:storm profile).
 */
export function fromHex(h: string): Uint8Array {
  if (h.length % 2 !== 0) throw new TypeError('fromHex: not hex');
  const out = new Uint8Array(h.length / 2);
  let bad = 0;
  for (let i = 0; i < out.length; i++) {
    const hi = hexNibble(h.charCodeAt(2 * i));
    const lo = hexNibble(h.charCodeAt(2 * i + 1));
    bad |= (hi | lo) & 256;
    out[i] = ((hi << 4) | lo) & 255;
  }
  if (bad) throw new TypeError('fromHex: not hex');
  return out;
}

/** A hex character's value, or a number with bit 8 set for any other character code; no branch on c. */
function hexNibble(c: number): number {
  const b = c & 255;
  const num = b ^ 48;
  const isNum = ((num - 10) >> 8) & 255; // 255 when num < 10 (num is 0..255)
  const alpha = (b & ~32) - 55;
  const isAlpha = (((alpha - 10) ^ (alpha - 16)) >> 8) & 255; // 255 when 10 <= alpha < 16
  const wide = ((255 - c) >> 31) & 256; // a char code above one byte
  return (isNum & num) | (isAlpha & alpha) | (((isNum | isAlpha) ^ 255) << 8) | wide; // bit 8 set when neither
}

/** Overwrite key material we no longer need. */
export function wipe(...arrays: Uint8Array[]): void {
  for (const a of arrays) a.fill(0);
}
