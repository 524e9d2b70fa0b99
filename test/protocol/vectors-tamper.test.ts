/**
 * The vector tests must fail if any published expected value is altered.
 * For each vector file, copy ../shared/vectors to a temp dir, change one
 * expected value, and run the test file that reads it against the copy
 * (KAGI_VECTORS): it must exit non-zero. Then the untouched copy must pass,
 * so the failure is the tampering and nothing else.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VECTORS_DIR } from '../helpers/vectors.js';
import { nodeArgs } from '../helpers/built.js';

/** Flip the last hex digit of a string (keeps it valid hex, changes the value). */
function flip(h: string): string {
  const last = h.at(-1)!;
  return h.slice(0, -1) + (last === '0' ? '1' : '0');
}

interface Tamper {
  file: string;
  test: string;
  what: string;
  edit(v: any): void;
}

const tampers: Tamper[] = [
  { file: 'hpke/rfc9180-x25519-sha256-chacha20poly1305.json', test: 'hpke', what: 'mode 3 export', edit: (v) => (v[3].exports[2].exported_value = flip(v[3].exports[2].exported_value)) },
  { file: 'hpke/rfc9180-x25519-sha256-chacha20poly1305.json', test: 'hpke', what: 'mode 1 ct at seq 256', edit: (v) => (v[1].encryptions[5].ct = flip(v[1].encryptions[5].ct)) },
  { file: 'rfc/rfc7748_x25519.json', test: 'vectors-x25519', what: '1,000-iteration k', edit: (v) => (v.iterated.vectors[1].k = flip(v.iterated.vectors[1].k)) },
  { file: 'rfc/rfc7748_x25519.json', test: 'vectors-x25519', what: 'DH shared', edit: (v) => (v.diffie_hellman.shared = flip(v.diffie_hellman.shared)) },
  { file: 'rfc/rfc8439_aead_chacha20_poly1305.json', test: 'vectors-chacha20poly1305', what: 'AEAD tag', edit: (v) => (v.vectors[0].tag = flip(v.vectors[0].tag)) },
  { file: 'rfc/rfc8439_chacha20.json', test: 'vectors-chacha20poly1305', what: 'block keystream', edit: (v) => (v.block_function.vectors[0].keystream = flip(v.block_function.vectors[0].keystream)) },
  { file: 'rfc/rfc8439_chacha20.json', test: 'vectors-chacha20poly1305', what: 'quarter round', edit: (v) => (v.quarter_round[0].output.a = flip(v.quarter_round[0].output.a)) },
  { file: 'rfc/rfc8439_poly1305.json', test: 'vectors-chacha20poly1305', what: 'Poly1305 tag', edit: (v) => (v.mac.vectors[0].tag = flip(v.mac.vectors[0].tag)) },
  { file: 'wycheproof/x25519_test.json', test: 'vectors-x25519', what: 'Wycheproof shared', edit: (v) => (v.testGroups[0].tests[0].shared = flip(v.testGroups[0].tests[0].shared)) },
  { file: 'wycheproof/chacha20_poly1305_test.json', test: 'vectors-chacha20poly1305', what: 'Wycheproof ct', edit: (v) => (v.testGroups[0].tests[3].ct = flip(v.testGroups[0].tests[3].ct)) },
  { file: 'wycheproof/hkdf_sha256_test.json', test: 'vectors-hkdf-hmac', what: 'Wycheproof okm', edit: (v) => (v.testGroups[0].tests[0].okm = flip(v.testGroups[0].tests[0].okm)) },
  { file: 'wycheproof/hmac_sha256_test.json', test: 'vectors-hkdf-hmac', what: 'Wycheproof tag', edit: (v) => (v.testGroups[0].tests[0].tag = flip(v.testGroups[0].tests[0].tag)) },
];

function runAgainst(dir: string, test: string): number | null {
  const r = spawnSync(process.execPath, nodeArgs(join('test', 'protocol', `${test}.test.ts`)), {
    env: { ...process.env, KAGI_VECTORS: dir, TAP: '1' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return r.status;
}

t.test('altering any expected value fails the vector tests', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'kagi-vectors-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  cpSync(VECTORS_DIR, join(base, 'clean'), { recursive: true });
  for (const test of new Set(tampers.map((x) => x.test))) {
    t.equal(runAgainst(join(base, 'clean'), test), 0, `${test}: passes on an untouched copy`);
  }
  tampers.forEach((x, i) => {
    const dir = join(base, `t${i}`);
    cpSync(join(base, 'clean'), dir, { recursive: true });
    const path = join(dir, x.file);
    const v = JSON.parse(readFileSync(path, 'utf8'));
    x.edit(v);
    writeFileSync(path, JSON.stringify(v));
    t.not(runAgainst(dir, x.test), 0, `${x.test}: fails when ${x.file} has a different ${x.what}`);
  });
});
