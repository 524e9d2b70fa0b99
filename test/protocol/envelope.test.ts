/**
 * Envelope and sealed messages: round trips, strict decoding, and the
 * property that any truncation, bit flip or appended byte is a KagiError.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { decodeEnvelope, encodeEnvelope, encodeEnvelopeHeader, type EnvelopeHeader } from '../../protocol/envelope.js';
import { MESSAGE_TYPES, typeByCode, type MessageType } from '../../protocol/messages.js';
import { KagiError } from '../../protocol/errors.js';
import { LIMITS } from '../../protocol/limits.js';
import { encode } from '../../protocol/cbor.js';
import { fromHex } from '../../protocol/bytes.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { PendingReplies, openRequest, openSymmetric, sealRequest, sealSymmetric } from '../../protocol/sealed.js';

const c = nodeCrypto();
const types = Object.keys(MESSAGE_TYPES) as MessageType[];
const idArb = fc.stringMatching(/^[A-Za-z0-9._:-]{1,64}$/);
const u32 = fc.integer({ min: 0, max: LIMITS.maxSeq });

const headerArb: fc.Arbitrary<EnvelopeHeader> = fc
  .record({ type: fc.constantFrom(...types), from: idArb, to: idArb, seq: u32, reqId: u32, enc: fc.uint8Array({ minLength: 32, maxLength: 32 }) })
  .map((h) => ({ ...h, enc: MESSAGE_TYPES[h.type].kind === 'sealed' ? h.enc : null }));
const ctArb = fc.uint8Array({ minLength: 16, maxLength: 600 });

/** Decoding must either succeed or throw a KagiError: nothing else. */
function decodeOutcome(bytes: Uint8Array): 'ok' | 'kagi' {
  try {
    decodeEnvelope(bytes);
    return 'ok';
  } catch (e) {
    if (e instanceof KagiError) return 'kagi';
    throw e;
  }
}

t.test('envelope round trip', async (t) => {
  fc.assert(
    fc.property(headerArb, ctArb, (h, ct) => {
      const header = encodeEnvelopeHeader(h);
      const env = decodeEnvelope(encodeEnvelope(header, ct));
      return env.type === h.type && env.from === h.from && env.to === h.to && env.seq === h.seq && env.reqId === h.reqId &&
        (env.enc === null ? h.enc === null : h.enc !== null && Buffer.compare(env.enc, h.enc) === 0) &&
        Buffer.compare(env.ciphertext, ct) === 0 && Buffer.compare(env.header, header) === 0 &&
        env.kind === MESSAGE_TYPES[h.type].kind;
    }),
    { numRuns: 500 },
  );
  t.pass('500 random envelopes round-tripped with their header bytes');
});

t.test('any truncation or appended byte of an envelope is a typed error', async (t) => {
  fc.assert(
    fc.property(headerArb, ctArb, fc.nat(), fc.integer({ min: 0, max: 255 }), (h, ct, cut, extra) => {
      const bytes = encodeEnvelope(encodeEnvelopeHeader(h), ct);
      const truncated = bytes.subarray(0, cut % bytes.length);
      const appended = new Uint8Array([...bytes, extra]);
      return decodeOutcome(truncated) === 'kagi' && decodeOutcome(appended) === 'kagi';
    }),
    { numRuns: 1000 },
  );
  t.pass('1000 truncations and appends rejected');
});

t.test('bit flips: a typed error, or a still-valid envelope that sealing then catches', async (t) => {
  // A flip inside the ciphertext or an id character can leave a well-formed
  // envelope; the sealed-message property below proves those fail to open.
  fc.assert(
    fc.property(headerArb, ctArb, fc.nat(), fc.integer({ min: 0, max: 7 }), (h, ct, pos, bit) => {
      const bytes = encodeEnvelope(encodeEnvelopeHeader(h), ct);
      const flipped = bytes.slice();
      flipped[pos % bytes.length]! ^= 1 << bit;
      decodeOutcome(flipped); // throws if anything but a KagiError escapes
      return true;
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 bit flips decoded or were rejected with a KagiError');
});

function codeOf(bytes: Uint8Array): string {
  try {
    decodeEnvelope(bytes);
    return 'ok';
  } catch (e) {
    return e instanceof KagiError ? e.code : `foreign: ${String(e)}`;
  }
}

t.test('strict decoding names what is wrong', async (t) => {
  const enc = new Uint8Array(32);
  const ct = new Uint8Array(16);
  const good = [1, 1, 'dev-1', 'config', 1, 7, enc, ct];
  t.equal(codeOf(encode(good)), 'ok', 'the well-formed one passes');
  t.equal(codeOf(encode([2, ...good.slice(1)])), 'version', 'unknown version');
  t.equal(codeOf(encode([1, 999, ...good.slice(2)])), 'type', 'unknown type');
  t.equal(codeOf(encode([1, 1, 5, ...good.slice(3)])), 'field', 'from not a string');
  t.equal(codeOf(encode([1, 1, 'a/b', ...good.slice(3)])), 'field', 'topic separator in an id');
  t.equal(codeOf(encode([1, 1, 'x'.repeat(65), ...good.slice(3)])), 'field', 'id too long');
  t.equal(codeOf(encode([1, 1, 'd', 'c', -1, 7, enc, ct])), 'field', 'negative seq');
  t.equal(codeOf(encode([1, 1, 'd', 'c', 1.5, 7, enc, ct])), 'field', 'fractional seq');
  t.equal(codeOf(encode([1, 1, 'd', 'c', 1, 'x', enc, ct])), 'field', 'reqId not a number');
  t.equal(codeOf(encode([1, 1, 'd', 'c', 1, 7, null, ct])), 'field', 'sealed type without enc');
  t.equal(codeOf(encode([1, 2, 'd', 'c', 1, 7, enc, ct])), 'field', 'reply type with enc');
  t.equal(codeOf(encode([1, 1, 'd', 'c', 1, 7, new Uint8Array(31), ct])), 'field', 'short enc');
  t.equal(codeOf(encode([1, 1, 'd', 'c', 1, 7, enc, new Uint8Array(15)])), 'field', 'ciphertext shorter than a tag');
  t.equal(codeOf(encode([1, 1, 'd', 'c', 1, 7, enc, new Uint8Array(LIMITS.ciphertextBytes + 1)])), 'size', 'oversize ciphertext');
  t.equal(codeOf(new Uint8Array(LIMITS.envelopeBytes + 1)), 'size', 'oversize envelope');
  t.equal(codeOf(encode(good.slice(0, 7))), 'decode', 'seven fields');
  t.equal(codeOf(encode({ a: 1 })), 'decode', 'not an array');
  t.equal(codeOf(fromHex('ff')), 'decode', 'not CBOR');
  t.equal(codeOf(new Uint8Array(0)), 'decode', 'empty');
  // The same array with an indefinite-length head (0x9f ... 0xff).
  const definite = encode(good);
  const indefinite = new Uint8Array([0x9f, ...definite.subarray(1), 0xff]);
  t.equal(codeOf(indefinite), 'noncanonical', 'indefinite-length array');
  // seq 1 spelled as a two-byte integer (0x18 0x01) instead of 0x01.
  const hdr = encode([1, 1, 'd', 'c']);
  const longInt = new Uint8Array([...encode([1, 1, 'd', 'c', 1, 7, enc, ct])]);
  const seqAt = hdr.length; // position of seq inside the 8-array
  const spelled = new Uint8Array([...longInt.subarray(0, seqAt), 0x18, 0x01, ...longInt.subarray(seqAt + 1)]);
  t.equal(codeOf(spelled), 'noncanonical', 'over-long integer head');
  // A deeply nested array must not blow the stack into a foreign error.
  t.equal(codeOf(new Uint8Array(5000).fill(0x81)), 'decode', 'deep nesting');
  t.equal(typeByCode(1).name, 'config.request', 'type registry maps codes back');
});

// --- sealed messages -------------------------------------------------------

const dev = c.generateKeyPair();
const svc = c.generateKeyPair();

function expectCode(t: Test, fn: () => unknown, code: string, msg: string) {
  t.throws(fn, { name: 'KagiError', code }, msg);
}

t.test('request, reply and channel messages', async (t) => {
  const route = { type: 'config.request' as const, from: 'dev-1', to: 'config', seq: 1, reqId: 42 };
  const { bytes, secrets } = sealRequest(c, route, dev.secretKey, svc.publicKey, { mac: '02:00:00:00:00:01' }, 1_800_000_000, 7);
  const env = decodeEnvelope(bytes);
  const opened = openRequest(c, env, svc.secretKey, dev.publicKey);
  t.same(opened.body, { mac: '02:00:00:00:00:01' }, 'the service reads the request');
  t.equal(opened.issuedAt, 1_800_000_000, 'and when it was issued');
  t.equal(opened.era, 7, 'and the era of its seq');
  expectCode(t, () => sealRequest(c, route, dev.secretKey, svc.publicKey, {}, 1, 2 ** 32), 'argument', 'an era is a uint32');
  expectCode(t, () => openRequest(c, env, svc.secretKey, c.generateKeyPair().publicKey), 'auth', 'auth mode: another sender key fails');

  const pending = new PendingReplies();
  pending.expect(42, 'config', secrets);
  const reply = sealSymmetric(c, { type: 'config.response', from: 'config', to: 'dev-1', seq: 1, reqId: 42 }, opened.secrets.replyKey(), { ok: true });
  const stray = sealSymmetric(c, { type: 'config.response', from: 'auth', to: 'dev-1', seq: 1, reqId: 42 }, opened.secrets.replyKey(), { ok: true });
  expectCode(t, () => pending.open(c, decodeEnvelope(stray)), 'unexpected', 'a reply from another peer is unexpected');
  const other = sealSymmetric(c, { type: 'config.response', from: 'config', to: 'dev-1', seq: 2, reqId: 43 }, opened.secrets.replyKey(), {});
  expectCode(t, () => pending.open(c, decodeEnvelope(other)), 'unexpected', 'a reply to a request we never sent');
  t.same(pending.open(c, decodeEnvelope(reply)), { ok: true }, 'the reply opens');
  expectCode(t, () => pending.open(c, decodeEnvelope(reply)), 'unexpected', 'a replayed reply finds no request');

  // A reply to another request, even from the right peer, cannot be opened
  // with this request's key: the binding is cryptographic.
  const second = sealRequest(c, { ...route, seq: 2, reqId: 44 }, dev.secretKey, svc.publicKey, {}, 1, 0);
  pending.expect(44, 'config', second.secrets);
  const forged = sealSymmetric(c, { type: 'config.response', from: 'config', to: 'dev-1', seq: 3, reqId: 44 }, opened.secrets.replyKey(), {});
  expectCode(t, () => pending.open(c, decodeEnvelope(forged)), 'auth', 'a reply sealed for another request fails');

  const dk = secrets.channelKeys();
  const sk = opened.secrets.channelKeys();
  t.same(dk, sk, 'both ends export the same channel keys');
  t.not(Buffer.compare(dk.up, dk.down), 0, 'the two directions differ');
  const poll = sealSymmetric(c, { type: 'poll', from: 'config', to: 'dev-1', seq: 9, reqId: 1 }, sk.down, { n: 1 });
  t.same(openSymmetric(c, decodeEnvelope(poll), dk.down), { n: 1 }, 'poll opens with the down key');
  expectCode(t, () => openSymmetric(c, decodeEnvelope(poll), dk.up), 'auth', 'not with the up key');
  expectCode(t, () => sealSymmetric(c, route, sk.down, {}), 'argument', 'a sealed type cannot go symmetric');
  expectCode(t, () => sealRequest(c, { ...route, type: 'poll' }, dev.secretKey, svc.publicKey, {}, 1, 0), 'argument', 'a channel type cannot be a request');
});

t.test('any bit flip of a sealed message fails with a typed error', async (t) => {
  const route = { type: 'join.request' as const, from: 'dev-1', to: 'config', seq: 5, reqId: 9 };
  const { bytes } = sealRequest(c, route, dev.secretKey, svc.publicKey, { user: 'alice', blob: new Uint8Array(40) }, 1, 0);
  let checked = 0;
  for (let pos = 0; pos < bytes.length; pos++) {
    for (let bit = 0; bit < 8; bit++) {
      const f = bytes.slice();
      f[pos]! ^= 1 << bit;
      try {
        openRequest(c, decodeEnvelope(f), svc.secretKey, dev.publicKey);
        t.fail(`flip at ${pos}.${bit} was accepted`);
      } catch (e) {
        if (!(e instanceof KagiError)) throw e;
        checked++;
      }
    }
  }
  t.equal(checked, bytes.length * 8, `all ${bytes.length * 8} single-bit flips rejected`);
  for (let cut = 0; cut < bytes.length; cut++) {
    if (codeOf(bytes.subarray(0, cut)) === 'ok') t.fail(`truncation to ${cut} decoded`);
  }
  t.equal(codeOf(new Uint8Array([...bytes, 0])), 'decode', 'appended byte');
});
