/** ChaCha20, Poly1305 and AEAD vectors (RFC 8439, Wycheproof) on both backends; the checks are in test/helpers/vector-checks/chacha20poly1305.ts. */
import t from 'tap';
import { runAsTests, VECTORS_DIR } from '../helpers/vectors.js';
import { chacha20Poly1305Checks } from '../helpers/vector-checks/chacha20poly1305.js';

runAsTests(t, chacha20Poly1305Checks(VECTORS_DIR));
