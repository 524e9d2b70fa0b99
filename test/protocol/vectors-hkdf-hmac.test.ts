/** HKDF-SHA256 and HMAC-SHA256 on both backends: every Wycheproof case. */
import t from 'tap';
import { backends } from '../helpers/backends.js';
import { hex, loadVectors, toHex } from '../helpers/vectors.js';
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
    const wrong: number[] = [];
    let checked = 0;
    for (const g of hkdf.testGroups) {
      for (const v of g.tests) {
        checked++;
        const ikm = hex(v.ikm), salt = hex(v.salt), info = hex(v.info);
        if (v.result === 'valid') {
          const oneShot = toHex(c.hkdf(ikm, salt, info, v.size));
          const split = toHex(c.hkdfExpand(c.hkdfExtract(salt, ikm), info, v.size));
          if (oneShot !== v.okm || split !== v.okm) wrong.push(v.tcId);
        } else if (!refuses(() => c.hkdf(ikm, salt, info, v.size)) || !refuses(() => c.hkdfExpand(c.hkdfExtract(salt, ikm), info, v.size))) {
          wrong.push(v.tcId);
        }
      }
    }
    t.equal(checked, hkdf.numberOfTests, `all ${hkdf.numberOfTests} cases checked`);
    t.same(wrong, [], 'every case gives its expected result');
  });

  t.test(`Wycheproof hmac-sha256 on ${c.name}`, async (t) => {
    const wrong: number[] = [];
    let checked = 0;
    for (const g of hmac.testGroups) {
      for (const v of g.tests) {
        checked++;
        const tag = c.hmacSha256(hex(v.key), hex(v.msg)).subarray(0, g.tagSize / 8);
        if (equalCT(tag, hex(v.tag)) !== (v.result === 'valid')) wrong.push(v.tcId);
      }
    }
    t.equal(checked, hmac.numberOfTests, `all ${hmac.numberOfTests} cases checked`);
    t.same(wrong, [], 'every case gives its expected result');
  });
}
