/**
 * The data plane's CBOR shortcuts (docs/decisions.md, 88): encoding a value
 * that ends in a byte string without passing that byte string through
 * cbor-x, and the strict decoder's canonical check that re-encodes all but
 * it. Both are held to the plain way, cbor-x encoding the whole value and
 * comparing every byte, as the oracle.
 */
import t from 'tap';
import fc from 'fast-check';
import { Encoder, Tag } from 'cbor-x';
import { byteStringHead, decodeStrict, encode, encodeHeader, encodeParts, uintHead } from '../../protocol/cbor.js';
import { encodePortFrame, PortFrameDecoder } from '../../protocol/port-frame.js';
import { FrameReceiver, FrameSender, decodeFrame } from '../../protocol/vpn-frame.js';
import { KagiError } from '../../protocol/errors.js';
import { backends } from '../helpers/backends.js';
import { concat } from '../../protocol/bytes.js';
import type { Crypto } from '../../protocol/crypto/backend.js';

// The codec's settings (protocol/cbor.ts), used whole: the oracle.
const oracle = new Encoder({ tagUint8Array: false, useRecords: false, variableMapSize: true, mapsAsObjects: true });
const whole = (v: unknown): Uint8Array => new Uint8Array(oracle.encode(v));
/** The canonical check as it was: decode, re-encode everything, compare every byte. */
/**
 * Tags are CBOR, only not the protocol's: the strict decoder refuses them
 * before decoding (decision 106). cbor-x gives a tag it knows as a value of
 * its own (tag 1 as a Date, 258 as a Set, …) and one it does not as a Tag:
 * anything but plain data (byte strings, arrays, maps, plain objects, scalars)
 * came from a tag. (A fast-check seed found tag 1 on an integer, which
 * cbor-x decodes to a Date and re-encodes byte for byte.) A bigint beyond
 * what a 64-bit head can hold came from tag 2 or 3, a bignum: cbor-x
 * re-encodes it as the same bignum (another seed: C2 49 01 00…00, 2^64).
 */
const INT64_HEAD_MAX = (1n << 64n) - 1n;
function hasTag(v: unknown): boolean {
  if (typeof v === 'bigint') return v > INT64_HEAD_MAX || v < -INT64_HEAD_MAX - 1n;
  if (v instanceof Uint8Array || v === null || typeof v !== 'object') return false;
  if (v instanceof Map) return [...v.keys(), ...v.values()].some(hasTag);
  if (v instanceof Tag || (!Array.isArray(v) && Object.getPrototypeOf(v) !== Object.prototype)) return true;
  return Object.values(v).some(hasTag);
}
function oracleAccepts(b: Uint8Array): boolean {
  try {
    const v = oracle.decode(b);
    return !hasTag(v) && Buffer.compare(oracle.encode(v), b) === 0;
  } catch {
    return false;
  }
}
function accepts(b: Uint8Array): boolean {
  try {
    decodeStrict(b, 1 << 20);
    return true;
  } catch (e) {
    if (e instanceof KagiError) return false;
    throw e;
  }
}

const SIZES = [0, 1, 23, 24, 255, 256, 65_535, 65_536, 70_000];
const bytesOf = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

t.test('a value ending in a byte string encodes to the bytes cbor-x gives for the whole', async (t) => {
  for (const n of SIZES) {
    const b = bytesOf(n);
    const shapes: unknown[] = [b, [2, 'plant', 7, b], ['data', { vpn: 'plant', peer: 'term-b', bytes: b }], [1, [2, { x: b }]], { a: 1, z: b }];
    for (const v of shapes) t.same(encode(v), whole(v), `${n} bytes, ${JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? `<${x.length}>` : x))}`);
    t.same(byteStringHead(n), whole(b).subarray(0, whole(b).length - n), `head of ${n} bytes`);
  }
  // A map whose last key is index-like is iterated in another order: the whole value is encoded.
  const odd = { b: 1, 7: new Uint8Array(3) };
  t.same(encode(odd), whole(odd), 'index-like key: same bytes');
  t.equal(encodeParts(odd).length, 1, 'index-like key: no shortcut');
  t.same(encode([1, 'x']), whole([1, 'x']), 'no byte string at the end: same bytes');
  t.same(encodeHeader([2, 'v', 3]), whole([2, 'v', 3, new Uint8Array(0)]).subarray(0, -1), 'encodeHeader: the array without its empty tail');
  for (const n of [0, 23, 24, 255, 256, 65_535, 65_536, 0xffff_ffff]) t.same(uintHead(n), whole(n), `uint ${n}`);
});

t.test('the strict decoder accepts exactly what the whole re-encoding accepts', async (t) => {
  const value = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.tuple(fc.nat(0xffff_ffff), fc.string({ maxLength: 8 }), fc.uint8Array({ maxLength: 300 })),
    fc.record({ vpn: fc.string({ maxLength: 8 }), peer: fc.string({ maxLength: 8 }), bytes: fc.uint8Array({ maxLength: 300 }) }).map((b) => ['data', b]),
  );
  let mutants = 0;
  fc.assert(
    fc.property(value, fc.nat(), fc.nat(255), fc.nat(4), (v, at, byte, how) => {
      const good = encode(v);
      if (!accepts(good)) return false;
      const b = good.slice();
      const i = at % b.length;
      let m: Uint8Array;
      if (how === 0) m = (b.set([byte], i), b);
      else if (how === 1) m = Uint8Array.of(...b, byte); // a trailing byte
      else if (how === 2) m = b.subarray(0, i); // truncated
      else if (how === 3) m = Uint8Array.of(...b.subarray(0, i), byte, ...b.subarray(i)); // a byte inserted
      else m = Uint8Array.of(...b.subarray(0, i), ...b.subarray(i + 1)); // a byte dropped
      mutants++;
      return accepts(m) === oracleAccepts(m);
    }),
    { numRuns: 3000 },
  );
  t.ok(mutants >= 3000, `${mutants} mutants judged as the oracle judges them`);

  // Spellings the shortcut must refuse: an over-long head on the tail, on a field before it.
  const over = Uint8Array.of(0x83, 0x01, 0x61, 0x78, 0x58, 0x03, 1, 2, 3); // [1, "x", h'010203'] with a 1-byte length
  t.notOk(accepts(over), 'over-long byte string head refused');
  t.ok(accepts(Uint8Array.of(0x83, 0x01, 0x61, 0x78, 0x43, 1, 2, 3)), 'its canonical spelling accepted');
  t.notOk(accepts(Uint8Array.of(0x83, 0x18, 0x01, 0x61, 0x78, 0x43, 1, 2, 3)), 'over-long integer before the tail refused');
  t.notOk(accepts(Uint8Array.of(0x83, 0x01, 0x61, 0x78, 0x5f, 0x43, 1, 2, 3, 0xff)), 'indefinite-length tail refused');
  const bignum = Uint8Array.of(0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0); // tag 2: 2^64, which no integer head holds
  t.notOk(accepts(bignum), 'a bignum refused, as every tag');
  t.notOk(oracleAccepts(bignum), 'and the oracle refuses it too');
  t.ok(accepts(Uint8Array.of(0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)) && oracleAccepts(Uint8Array.of(0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), '2^64 - 1 in its 8-byte head: accepted by both');
  // A value decoded from a copy (the tail is not the input's own bytes) takes the whole check.
  const port = encodePortFrame({ type: 'data', body: { vpn: 'plant', peer: 'term-b', bytes: bytesOf(20_000) } });
  t.same(port.subarray(4), whole(['data', { vpn: 'plant', peer: 'term-b', bytes: bytesOf(20_000) }]), 'a data port frame: length, then the same CBOR');
  // Data frames' prefixes are kept by vpn and peer: pairs that concatenate alike stay apart.
  for (const [vpn, peer] of [['a/b', 'c'], ['a', 'b/c'], ['ab', 'c'], ['a', 'bc'], ['a', 'bc']]) {
    const body = { vpn, peer, bytes: bytesOf(30) };
    t.same(encodePortFrame({ type: 'data', body }).subarray(4), whole(['data', body]), `data frame ${vpn} ${peer}`);
  }
  const other = { peer: 'p', vpn: 'v', bytes: bytesOf(5) };
  t.same(encodePortFrame({ type: 'data', body: other }).subarray(4), whole(['data', other]), 'a data frame with its keys in another order');
});

t.test('port frames split anywhere decode to what was sent', async (t) => {
  const frames = [64, 1024, 16_384].map((n) => encodePortFrame({ type: 'data', body: { vpn: 'plant', peer: 'p', bytes: bytesOf(n) } }));
  const all = Uint8Array.from(frames.flatMap((f) => [...f]));
  for (const step of [1, 3, 1000, 4096, all.length]) {
    const d = new PortFrameDecoder();
    const got: number[] = [];
    for (let i = 0; i < all.length; i += step) for (const f of d.push(all.subarray(i, i + step))) got.push(f instanceof KagiError ? -1 : (f.body.bytes as Uint8Array).length);
    t.same(got, [64, 1024, 16_384], `chunks of ${step}`);
  }
});

for (const c of backends) {
  t.test(`frame headers made once per target are the headers encoded whole (${c.name})`, async (t) => {
    const key = c.randomBytes(32);
    const tx = new FrameSender(c, 'plant', 'term-a');
    const rx = new FrameReceiver(c, 'plant', 30_000, 4096);
    tx.setKey(3, key);
    rx.setKey(3, key, 0);
    // Across the 1-, 2- and 3-byte counter encodings, to two targets and 'all'.
    for (let i = 0; i < 300; i++) {
      const target = ['term-b', 'all', 'term-c'][i % 3]!;
      const f = tx.seal(bytesOf(i), target);
      const d = decodeFrame(f); // strict: a wrong header byte would be 'noncanonical'
      t.equal(d.counter, i);
      if (i % 50 === 0 || i === 23 || i === 24 || i === 255 || i === 256) {
        t.same(d.header, encodeHeader([2, 'plant', 3, 'term-a', target, tx.bootSalt, i]), `counter ${i}: header as encoded whole`);
      }
      t.same(rx.open(f, 1, target).payload, bytesOf(i));
    }
    // A new epoch forgets the cached headers.
    tx.setKey(4, key);
    t.equal(decodeFrame(tx.seal(bytesOf(1), 'term-b')).epoch, 4, 'the next epoch is in the header');
  });
}

t.test('sealAfter is prefix || seal on both backends, and frames sealed on one open on the other', async (t) => {
  const [portable, node] = backends as [Crypto, Crypto];
  const key = node.randomBytes(32);
  const nonce = node.randomBytes(12);
  for (const n of [0, 64, 16_384]) {
    const pt = bytesOf(n);
    const prefix = bytesOf(9);
    const aad = bytesOf(40);
    const want = concat(prefix, portable.seal(key, nonce, pt, aad));
    t.same(node.sealAfter(prefix, key, nonce, pt, aad), want, `node, ${n} bytes`);
    t.same(portable.sealAfter(prefix, key, nonce, pt, aad), want, `portable, ${n} bytes`);
  }
  for (const [from, to] of [[node, portable], [portable, node]] as const) {
    const tx = new FrameSender(from, 'plant', 'term-a');
    const rx = new FrameReceiver(to, 'plant', 30_000);
    tx.setKey(1, key);
    rx.setKey(1, key, 0);
    t.same(rx.open(tx.seal(bytesOf(16_384), 'term-b'), 1, 'term-b').payload, bytesOf(16_384), `sealed on ${from.name}, opened on ${to.name}`);
  }
});
