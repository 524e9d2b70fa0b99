/** X25519 vectors (RFC 7748, Wycheproof) on both backends; the checks are in test/helpers/vector-checks/x25519.ts. */
import t from 'tap';
import { runAsTests, VECTORS_DIR } from '../helpers/vectors.js';
import { x25519Checks } from '../helpers/vector-checks/x25519.js';

runAsTests(t, x25519Checks(VECTORS_DIR));
