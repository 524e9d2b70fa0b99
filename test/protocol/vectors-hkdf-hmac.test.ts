/** HKDF-SHA256 and HMAC-SHA256 on both backends: every Wycheproof case. */
import t from 'tap';
import { backends } from '../helpers/backends.js';
import { eachWycheproofCase, hex, loadVectors, toHex } from '../helpers/vectors.js';
import { equalCT } from '../../protocol/bytes.js';
import { KagiError } from '../../protocol/errors.js';

const hkdf = loadVectors('wycheproof/hkdf_sha256_test.json');
const hmac = loadVectors('wycheproof/hmac_sha256_test.json');

function refuses(f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch (e) {
    return e instanceof KagiError && e.code === 'argument';
  }
}

for (const c of backends) {
  t.test(`Wycheproof hkdf-sha256 on ${c.name}`, async (t) => {
    eachWycheproofCase(t, hkdf, (_g, v) => {
      const ikm = hex(v.ikm), salt = hex(v.salt), info = hex(v.info);
      if (v.result !== 'valid') {
        return refuses(() => c.hkdf(ikm, salt, info, v.size)) && refuses(() => c.hkdfExpand(c.hkdfExtract(salt, ikm), info, v.size));
      }
      const oneShot = toHex(c.hkdf(ikm, salt, info, v.size));
      const split = toHex(c.hkdfExpand(c.hkdfExtract(salt, ikm), info, v.size));
      return oneShot === v.okm && split === v.okm;
    });
  });

  t.test(`Wycheproof hmac-sha256 on ${c.name}`, async (t) => {
    eachWycheproofCase(t, hmac, (g, v) => {
      const tag = c.hmacSha256(hex(v.key), hex(v.msg)).subarray(0, g.tagSize / 8);
      return equalCT(tag, hex(v.tag)) === (v.result === 'valid');
    });
  });
}
