/**
 * RFC 9180 Appendix A.2 vectors, all four modes, every encryption and
 * export, on both backends; plus the misuse and tamper cases.
 */
import t from 'tap';
import { backends } from '../helpers/backends.js';
import { loadVectors, hex, toHex } from '../helpers/vectors.js';
import { deriveKeyPair, setupRecipient, setupSender, MODE_AUTH, MODE_AUTH_PSK, MODE_PSK } from '../../protocol/hpke.js';
import { utf8 } from '../../protocol/bytes.js';

interface Vector {
  mode: number;
  info: string;
  ikmE: string; pkEm: string; skEm: string;
  ikmR: string; pkRm: string; skRm: string;
  ikmS?: string; pkSm?: string; skSm?: string;
  psk?: string; psk_id?: string;
  enc: string;
  encryptions: { seq: number; pt: string; aad: string; ct: string }[];
  exports: { exporter_context: string; L: number; exported_value: string }[];
}

const vectors = loadVectors<Vector[]>('hpke/rfc9180-x25519-sha256-chacha20poly1305.json');

for (const c of backends) {
  t.test(`RFC 9180 A.2 on ${c.name}`, async (t) => {
    t.same(vectors.map((v) => v.mode).sort(), [0, 1, 2, 3], 'all four modes present');
    for (const v of vectors) {
      t.test(`mode ${v.mode}`, async (t) => {
        const kpE = deriveKeyPair(c, hex(v.ikmE));
        t.equal(toHex(kpE.secretKey), v.skEm, 'DeriveKeyPair(ikmE).sk');
        t.equal(toHex(kpE.publicKey), v.pkEm, 'DeriveKeyPair(ikmE).pk');
        const kpR = deriveKeyPair(c, hex(v.ikmR));
        t.equal(toHex(kpR.secretKey), v.skRm, 'DeriveKeyPair(ikmR).sk');
        t.equal(toHex(kpR.publicKey), v.pkRm, 'DeriveKeyPair(ikmR).pk');
        const auth = v.mode === MODE_AUTH || v.mode === MODE_AUTH_PSK;
        if (auth) {
          const kpS = deriveKeyPair(c, hex(v.ikmS!));
          t.equal(toHex(kpS.secretKey), v.skSm, 'DeriveKeyPair(ikmS).sk');
          t.equal(toHex(kpS.publicKey), v.pkSm, 'DeriveKeyPair(ikmS).pk');
        }
        const psk = v.mode === MODE_PSK || v.mode === MODE_AUTH_PSK ? { psk: hex(v.psk!), pskId: hex(v.psk_id!) } : {};
        const info = hex(v.info);
        const { enc, ctx: s } = setupSender(c, hex(v.pkRm), {
          info, ...psk, ikmE: hex(v.ikmE), ...(auth ? { skS: hex(v.skSm!) } : {}),
        });
        t.equal(toHex(enc), v.enc, 'enc');
        const r = setupRecipient(c, hex(v.enc), hex(v.skRm), { info, ...psk, ...(auth ? { pkS: hex(v.pkSm!) } : {}) });

        // Seal every sequence number up to the last listed one, so the
        // vectors at seq 4, 255 and 256 are reached exactly as RFC 9180 does.
        const bySeq = new Map(v.encryptions.map((e) => [e.seq, e]));
        const last = Math.max(...bySeq.keys());
        let matched = 0;
        for (let seq = 0; seq <= last; seq++) {
          const e = bySeq.get(seq);
          const pt = hex(e ? e.pt : v.encryptions[0]!.pt);
          const aad = e ? hex(e.aad) : utf8(`Count-${seq}`);
          const ct = s.seal(pt, aad);
          const opened = r.open(e ? hex(e.ct) : ct, aad);
          if (!e) {
            if (!opened) t.fail(`open of our own seq ${seq} failed`);
            continue;
          }
          t.equal(toHex(ct), e.ct, `seal seq ${seq}`);
          t.equal(opened && toHex(opened), e.pt, `open seq ${seq}`);
          matched++;
        }
        t.equal(matched, v.encryptions.length, 'every encryption checked');
        for (const x of v.exports) {
          const ctx = hex(x.exporter_context);
          t.equal(toHex(s.export(ctx, x.L)), x.exported_value, `sender export "${x.exporter_context}"`);
          t.equal(toHex(r.export(ctx, x.L)), x.exported_value, `recipient export "${x.exporter_context}"`);
        }
      });
    }
  });

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
