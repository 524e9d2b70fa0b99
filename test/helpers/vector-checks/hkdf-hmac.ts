/** HKDF-SHA256 and HMAC-SHA256 on both backends: every Wycheproof case, read from `dir`. */
import { backends } from '../backends.js';
import { eachWycheproofCase, hex, loadVectors, toHex, type CheckGroup } from '../vectors.js';
import { equalCT } from '../../../protocol/bytes.js';
import { KagiError } from '../../../protocol/errors.js';

function refuses(f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch (e) {
    return e instanceof KagiError && e.code === 'argument';
  }
}

export function hkdfHmacChecks(dir: string): CheckGroup[] {
  const hkdf = loadVectors('wycheproof/hkdf_sha256_test.json', dir);
  const hmac = loadVectors('wycheproof/hmac_sha256_test.json', dir);
  return backends.flatMap((c): CheckGroup[] => [
    {
      name: `Wycheproof hkdf-sha256 on ${c.name}`,
      run(t) {
        eachWycheproofCase(t, hkdf, (_g, v) => {
          const ikm = hex(v.ikm), salt = hex(v.salt), info = hex(v.info);
          if (v.result !== 'valid') {
            return refuses(() => c.hkdf(ikm, salt, info, v.size)) && refuses(() => c.hkdfExpand(c.hkdfExtract(salt, ikm), info, v.size));
          }
          const oneShot = toHex(c.hkdf(ikm, salt, info, v.size));
          const split = toHex(c.hkdfExpand(c.hkdfExtract(salt, ikm), info, v.size));
          return oneShot === v.okm && split === v.okm;
        });
      },
    },
    {
      name: `Wycheproof hmac-sha256 on ${c.name}`,
      run(t) {
        eachWycheproofCase(t, hmac, (g, v) => {
          const tag = c.hmacSha256(hex(v.key), hex(v.msg)).subarray(0, g.tagSize / 8);
          return equalCT(tag, hex(v.tag)) === (v.result === 'valid');
        });
      },
    },
  ]);
}
