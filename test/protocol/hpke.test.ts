/**
 * RFC 9180 Appendix A.2 vectors, all four modes, every encryption and
 * export, on both backends (test/helpers/vector-checks/hpke.ts); plus the
 * misuse and tamper cases.
 */
import t from 'tap';
import { backends } from '../helpers/backends.js';
import { runAsTests, VECTORS_DIR } from '../helpers/vectors.js';
import { hpkeChecks } from '../helpers/vector-checks/hpke.js';
import { setupRecipient, setupSender } from '../../protocol/hpke.js';
import { utf8 } from '../../protocol/bytes.js';

runAsTests(t, hpkeChecks(VECTORS_DIR));

for (const c of backends) {
  t.test(`HPKE misuse and tampering on ${c.name}`, async (t) => {
    const r = c.generateKeyPair();
    const snd = c.generateKeyPair();
    const { enc, ctx } = setupSender(c, r.publicKey, { skS: snd.secretKey, info: utf8('x') });
    const ct = ctx.seal(utf8('hello'), utf8('aad'));
    const rc = setupRecipient(c, enc, r.secretKey, { pkS: snd.publicKey, info: utf8('x') });
    const flipped = ct.slice();
    flipped[0]! ^= 1;
    t.equal(rc.open(flipped, utf8('aad')), null, 'bit flip → null');
    t.equal(rc.open(ct, utf8('aaD')), null, 'other AAD → null');
    t.equal(rc.sequence, 0, 'failed opens do not advance the sequence');
    t.same(rc.open(ct, utf8('aad')), utf8('hello'), 'then the real one opens');
    t.equal(rc.open(ct, utf8('aad')), null, 'the same ciphertext does not open at the next sequence');

    const other = c.generateKeyPair();
    const wrong = setupRecipient(c, enc, r.secretKey, { pkS: other.publicKey, info: utf8('x') });
    t.equal(wrong.open(ct, utf8('aad')), null, 'auth mode: the wrong sender key cannot open');

    t.throws(() => ctx.open(ct), { name: 'KagiError', code: 'argument' }, 'open on a sender context');
    t.throws(() => rc.seal(ct), { name: 'KagiError', code: 'argument' }, 'seal on a recipient context');
    t.throws(() => setupSender(c, r.publicKey, { psk: new Uint8Array(32) }), { name: 'KagiError', code: 'argument' }, 'psk without psk_id');
    t.throws(() => setupSender(c, r.publicKey, { psk: new Uint8Array(8), pskId: utf8('id') }), { name: 'KagiError', code: 'argument' }, 'psk shorter than 32 bytes');
    t.throws(() => setupRecipient(c, new Uint8Array(31), r.secretKey), { name: 'KagiError', code: 'key' }, 'short enc');
    // A low-order point as the peer key gives an all-zero DH: RFC 9180 §7.1.4.
    t.throws(() => setupSender(c, new Uint8Array(32)), { name: 'KagiError', code: 'key' }, 'zero public key rejected');
    t.throws(() => setupRecipient(c, new Uint8Array(32), r.secretKey), { name: 'KagiError', code: 'key' }, 'zero enc rejected');
  });
}
