/**
 * X25519 on both backends: RFC 7748 §5.2 and §6.1, and every Wycheproof
 * x25519 case, read from `dir`. Policy for "acceptable" cases: an all-zero
 * shared secret is rejected (RFC 9180 §7.1.4); every other case must give
 * the listed value.
 */
import { backends } from '../backends.js';
import { eachWycheproofCase, hex, loadVectors, toHex, type CheckGroup } from '../vectors.js';
import { isAllZeroCT } from '../../../protocol/bytes.js';
import { KagiError } from '../../../protocol/errors.js';

export function x25519Checks(dir: string): CheckGroup[] {
  const rfc = loadVectors('rfc/rfc7748_x25519.json', dir);
  const wp = loadVectors('wycheproof/x25519_test.json', dir);
  const slow = process.env.KAGI_SLOW_VECTORS === '1';
  return backends.flatMap((c): CheckGroup[] => [
    {
      name: `RFC 7748 on ${c.name}`,
      run(t) {
        for (const v of rfc.scalar_mult) t.equal(toHex(c.x25519Raw(hex(v.scalar), hex(v.u))), v.output, v.section);
        for (const v of rfc.iterated.vectors) {
          if (v.iterations > 1000 && !slow) {
            const why = `RFC 7748 ${v.iterations}-iteration vector SKIPPED (slow): set KAGI_SLOW_VECTORS=1 to run it`;
            console.error(`*** ${why} ***`);
            t.pass(why, { skip: why });
            continue;
          }
          let k = hex(rfc.iterated.initial);
          let u = hex(rfc.iterated.initial);
          for (let i = 0; i < v.iterations; i++) [k, u] = [c.x25519Raw(k, u), k];
          t.equal(toHex(k), v.k, `${rfc.iterated.section}: ${v.iterations} iterations`);
        }
        const dh = rfc.diffie_hellman;
        t.equal(toHex(c.publicKey(hex(dh.alice_private))), dh.alice_public, 'alice public key');
        t.equal(toHex(c.publicKey(hex(dh.bob_private))), dh.bob_public, 'bob public key');
        t.equal(toHex(c.dh(hex(dh.alice_private), hex(dh.bob_public))), dh.shared, 'shared, alice side');
        t.equal(toHex(c.dh(hex(dh.bob_private), hex(dh.alice_public))), dh.shared, 'shared, bob side');
      },
    },
    {
      name: `Wycheproof x25519 on ${c.name}`,
      run(t) {
        let rejectedZero = 0;
        eachWycheproofCase(t, wp, (_g, v) => {
          const zero = v.flags.includes('ZeroSharedSecret') || isAllZeroCT(hex(v.shared));
          if (!zero) return toHex(c.dh(hex(v.private), hex(v.public))) === v.shared;
          // Raw X25519 gives zeros; the DH we use refuses them.
          const raw = c.x25519Raw(hex(v.private), hex(v.public));
          let refused = false;
          try {
            c.dh(hex(v.private), hex(v.public));
          } catch (e) {
            refused = e instanceof KagiError && e.code === 'key';
          }
          const ok = isAllZeroCT(raw) && refused && v.result !== 'valid';
          if (ok) rejectedZero++;
          return ok;
        });
        t.ok(rejectedZero > 0, `${rejectedZero} all-zero shared secrets rejected`);
      },
    },
  ]);
}
