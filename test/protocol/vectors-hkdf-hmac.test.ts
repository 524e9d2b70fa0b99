/** HKDF-SHA256 and HMAC-SHA256 Wycheproof vectors on both backends; the checks are in test/helpers/vector-checks/hkdf-hmac.ts. */
import t from 'tap';
import { runAsTests, VECTORS_DIR } from '../helpers/vectors.js';
import { hkdfHmacChecks } from '../helpers/vector-checks/hkdf-hmac.js';

runAsTests(t, hkdfHmacChecks(VECTORS_DIR));
