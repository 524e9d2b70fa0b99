/** RFC 9180 Appendix A.2 vectors, read from `dir`: all four modes, every encryption and export, on both backends. */
import { backends } from '../backends.js';
import { hex, loadVectors, toHex, type CheckGroup } from '../vectors.js';
import { deriveKeyPair, setupRecipient, setupSender, MODE_AUTH, MODE_AUTH_PSK, MODE_PSK } from '../../../protocol/hpke.js';
import { utf8 } from '../../../protocol/bytes.js';
import type { Crypto } from '../../../protocol/crypto/backend.js';

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

function modeCheck(c: Crypto, v: Vector): CheckGroup {
  return {
    name: `RFC 9180 A.2 mode ${v.mode} on ${c.name}`,
    run(t) {
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
      if (auth) heldKeys(t, c, v, info, psk);
    },
  };
}

/**
 * Auth modes once more with the static keys held, as every party holds its
 * own (Crypto.holdStaticKey): the static–static DH and our own public key
 * then come from the facade's cache (decision 76). Twice, so the second
 * setup is served from the cache, and both must give the vector's bytes.
 */
function heldKeys(t: Parameters<CheckGroup['run']>[0], c: Crypto, v: Vector, info: Uint8Array, psk: { psk?: Uint8Array; pskId?: Uint8Array }): void {
  const skS = hex(v.skSm!);
  const skR = hex(v.skRm!);
  c.holdStaticKey(skS);
  c.holdStaticKey(skR);
  const first = v.encryptions[0]!;
  for (const pass of ['first', 'cached']) {
    const { enc, ctx: s } = setupSender(c, hex(v.pkRm), { info, ...psk, ikmE: hex(v.ikmE), skS });
    t.equal(toHex(enc), v.enc, `held keys, ${pass}: enc`);
    t.equal(toHex(s.seal(hex(first.pt), hex(first.aad))), first.ct, `held keys, ${pass}: seal seq 0`);
    const r = setupRecipient(c, hex(v.enc), skR, { info, ...psk, pkS: hex(v.pkSm!) });
    t.equal(toHex(r.open(hex(first.ct), hex(first.aad)) ?? new Uint8Array(0)), first.pt, `held keys, ${pass}: open seq 0`);
  }
}

export function hpkeChecks(dir: string): CheckGroup[] {
  const vectors = loadVectors<Vector[]>('hpke/rfc9180-x25519-sha256-chacha20poly1305.json', dir);
  const modes: CheckGroup = {
    name: 'RFC 9180 A.2: the vectors',
    run: (t) => t.same(vectors.map((v) => v.mode).sort(), [0, 1, 2, 3], 'all four modes present'),
  };
  return [modes, ...backends.flatMap((c) => vectors.map((v) => modeCheck(c, v)))];
}
