/**
 * ChaCha20, Poly1305 and the AEAD on both backends, read from `dir`: RFC
 * 8439 (quarter round, block, encryption, Poly1305, key generation, AEAD)
 * and every Wycheproof chacha20-poly1305 case.
 */
import { backends } from '../backends.js';
import { eachWycheproofCase, hex, loadVectors, toHex, type CheckGroup } from '../vectors.js';
import { concat } from '../../../protocol/bytes.js';
import { KagiError } from '../../../protocol/errors.js';

/** RFC 8439 §2.1 reference quarter round: no backend exposes its own. */
function qr(s: number[], a: number, b: number, c: number, d: number): void {
  const rotl = (x: number, n: number) => ((x << n) | (x >>> (32 - n))) >>> 0;
  s[a] = (s[a]! + s[b]!) >>> 0; s[d] = rotl(s[d]! ^ s[a]!, 16);
  s[c] = (s[c]! + s[d]!) >>> 0; s[b] = rotl(s[b]! ^ s[c]!, 12);
  s[a] = (s[a]! + s[b]!) >>> 0; s[d] = rotl(s[d]! ^ s[a]!, 8);
  s[c] = (s[c]! + s[d]!) >>> 0; s[b] = rotl(s[b]! ^ s[c]!, 7);
}
const w = (x: string) => parseInt(x, 16) >>> 0;
const hw = (x: number) => x.toString(16).padStart(8, '0');

export function chacha20Poly1305Checks(dir: string): CheckGroup[] {
  const cc = loadVectors('rfc/rfc8439_chacha20.json', dir);
  const poly = loadVectors('rfc/rfc8439_poly1305.json', dir);
  const aead = loadVectors('rfc/rfc8439_aead_chacha20_poly1305.json', dir);
  const wp = loadVectors('wycheproof/chacha20_poly1305_test.json', dir);
  const quarterRound: CheckGroup = {
    name: 'RFC 8439 §2.1 quarter round (reference)',
    run(t) {
      const [v1, v2] = cc.quarter_round;
      const s = [w(v1.input.a), w(v1.input.b), w(v1.input.c), w(v1.input.d)];
      qr(s, 0, 1, 2, 3);
      t.same(s.map(hw), [v1.output.a, v1.output.b, v1.output.c, v1.output.d], v1.section);
      const st = v2.state_in.map(w);
      qr(st, 2, 7, 8, 13);
      t.same(st.map(hw), v2.state_out, v2.section);
    },
  };
  return [quarterRound, ...backends.flatMap((c): CheckGroup[] => [
    {
      name: `RFC 8439 on ${c.name}`,
      run(t) {
        for (const v of cc.block_function.vectors) {
          t.equal(toHex(c.backend.chacha20Xor(hex(v.key), hex(v.nonce), v.counter, new Uint8Array(64))), v.keystream, `${v.section} block`);
        }
        for (const v of cc.encrypt.vectors) {
          t.equal(toHex(c.backend.chacha20Xor(hex(v.key), hex(v.nonce), v.counter, hex(v.plaintext))), v.ciphertext, `${v.section} encrypt`);
        }
        for (const v of poly.keygen.vectors) {
          t.equal(toHex(c.backend.chacha20Xor(hex(v.key), hex(v.nonce), 0, new Uint8Array(64)).subarray(0, 32)), v.otk, `${v.section} key generation`);
        }
        if (c.backend.poly1305) {
          for (const v of poly.mac.vectors) t.equal(toHex(c.backend.poly1305(hex(v.key), hex(v.msg))), v.tag, `${v.section} Poly1305`);
        } else {
          // node:crypto has no standalone Poly1305; the AEAD vectors below and
          // Wycheproof's EdgeCasePoly1305 cases cover it inside the AEAD.
          t.equal(c.name, 'node', 'only the node backend lacks standalone Poly1305');
        }
        for (const v of aead.vectors) {
          const sealed = c.seal(hex(v.key), hex(v.nonce), hex(v.plaintext), hex(v.aad));
          t.equal(toHex(sealed), v.ciphertext + v.tag, `${v.section} seal`);
          t.equal(toHex(c.open(hex(v.key), hex(v.nonce), sealed, hex(v.aad))!), v.plaintext, `${v.section} open`);
          t.equal(toHex(c.backend.chacha20Xor(hex(v.key), hex(v.nonce), 0, new Uint8Array(64)).subarray(0, 32)), v.poly1305_otk, `${v.section} one-time key`);
        }
      },
    },
    {
      name: `Wycheproof chacha20-poly1305 on ${c.name}`,
      run(t) {
        eachWycheproofCase(t, wp, (_g, v) => {
          const key = hex(v.key), iv = hex(v.iv), aad = hex(v.aad), msg = hex(v.msg);
          const sealed = concat(hex(v.ct), hex(v.tag));
          if (v.flags.includes('InvalidNonceSize')) {
            let refused = 0;
            for (const f of [() => c.seal(key, iv, msg, aad), () => c.open(key, iv, sealed, aad)]) {
              try {
                f();
              } catch (e) {
                if (e instanceof KagiError && e.code === 'key') refused++;
              }
            }
            return refused === 2 && v.result === 'invalid';
          }
          if (v.result !== 'valid') return c.open(key, iv, sealed, aad) === null;
          const opened = c.open(key, iv, sealed, aad);
          return toHex(c.seal(key, iv, msg, aad)) === v.ct + v.tag && opened !== null && toHex(opened) === v.msg;
        });
      },
    },
  ])];
}
