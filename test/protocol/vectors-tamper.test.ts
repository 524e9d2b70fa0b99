/**
 * The vector tests must fail if any published expected value is altered.
 * For each vector file, copy ../shared/vectors to a temp dir, change one
 * expected value, and run the checks that the vector test files run
 * (test/helpers/vector-checks/) against the copy, in this process: they
 * must report a failure naming the altered value. The untouched copy must
 * report none, so the failure is the tampering and nothing else.
 */
import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { failuresOf, VECTORS_DIR, type CheckGroup } from '../helpers/vectors.js';
import { hpkeChecks } from '../helpers/vector-checks/hpke.js';
import { x25519Checks } from '../helpers/vector-checks/x25519.js';
import { chacha20Poly1305Checks } from '../helpers/vector-checks/chacha20poly1305.js';
import { hkdfHmacChecks } from '../helpers/vector-checks/hkdf-hmac.js';

/** Flip the last hex digit of a string (keeps it valid hex, changes the value). */
function flip(h: string): string {
  const last = h.at(-1)!;
  return h.slice(0, -1) + (last === '0' ? '1' : '0');
}

/** The checks each vector test file runs, by the file's name. */
const suites: Record<string, (dir: string) => CheckGroup[]> = {
  hpke: hpkeChecks,
  'vectors-x25519': x25519Checks,
  'vectors-chacha20poly1305': chacha20Poly1305Checks,
  'vectors-hkdf-hmac': hkdfHmacChecks,
};

/**
 * One altered value. `edit` changes it and returns what a failure must
 * name: the altered value itself, or for a Wycheproof case (whose check
 * lists the wrong cases by id) the list holding that case's tcId.
 */
interface Tamper {
  file: string;
  test: string;
  what: string;
  edit(v: any): string;
}

/** Flip `o[k]` and return the new value. */
function flipIn(o: any, k: string): string {
  o[k] = flip(o[k]);
  return o[k];
}

/** Flip `k` of a Wycheproof case and return how the check names that case. */
function flipCase(c: any, k: string): string {
  c[k] = flip(c[k]);
  return `got [${c.tcId}]`;
}

const tampers: Tamper[] = [
  { file: 'hpke/rfc9180-x25519-sha256-chacha20poly1305.json', test: 'hpke', what: 'mode 3 export', edit: (v) => flipIn(v[3].exports[2], 'exported_value') },
  { file: 'hpke/rfc9180-x25519-sha256-chacha20poly1305.json', test: 'hpke', what: 'mode 1 ct at seq 256', edit: (v) => flipIn(v[1].encryptions[5], 'ct') },
  { file: 'rfc/rfc7748_x25519.json', test: 'vectors-x25519', what: '1,000-iteration k', edit: (v) => flipIn(v.iterated.vectors[1], 'k') },
  { file: 'rfc/rfc7748_x25519.json', test: 'vectors-x25519', what: 'DH shared', edit: (v) => flipIn(v.diffie_hellman, 'shared') },
  { file: 'rfc/rfc8439_aead_chacha20_poly1305.json', test: 'vectors-chacha20poly1305', what: 'AEAD tag', edit: (v) => flipIn(v.vectors[0], 'tag') },
  { file: 'rfc/rfc8439_chacha20.json', test: 'vectors-chacha20poly1305', what: 'block keystream', edit: (v) => flipIn(v.block_function.vectors[0], 'keystream') },
  { file: 'rfc/rfc8439_chacha20.json', test: 'vectors-chacha20poly1305', what: 'quarter round', edit: (v) => flipIn(v.quarter_round[0].output, 'a') },
  { file: 'rfc/rfc8439_poly1305.json', test: 'vectors-chacha20poly1305', what: 'Poly1305 tag', edit: (v) => flipIn(v.mac.vectors[0], 'tag') },
  { file: 'wycheproof/x25519_test.json', test: 'vectors-x25519', what: 'Wycheproof shared', edit: (v) => flipCase(v.testGroups[0].tests[0], 'shared') },
  { file: 'wycheproof/chacha20_poly1305_test.json', test: 'vectors-chacha20poly1305', what: 'Wycheproof ct', edit: (v) => flipCase(v.testGroups[0].tests[3], 'ct') },
  { file: 'wycheproof/hkdf_sha256_test.json', test: 'vectors-hkdf-hmac', what: 'Wycheproof okm', edit: (v) => flipCase(v.testGroups[0].tests[0], 'okm') },
  { file: 'wycheproof/hmac_sha256_test.json', test: 'vectors-hkdf-hmac', what: 'Wycheproof tag', edit: (v) => flipCase(v.testGroups[0].tests[0], 'tag') },
];

t.test('altering any expected value fails the vector tests', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'kagi-vectors-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  cpSync(VECTORS_DIR, join(base, 'clean'), { recursive: true });
  for (const test of new Set(tampers.map((x) => x.test))) {
    t.same(failuresOf(suites[test]!(join(base, 'clean'))), [], `${test}: passes on an untouched copy`);
  }
  tampers.forEach((x, i) => {
    const dir = join(base, `t${i}`);
    cpSync(join(base, 'clean'), dir, { recursive: true });
    const path = join(dir, x.file);
    const v = JSON.parse(readFileSync(path, 'utf8'));
    const named = x.edit(v);
    writeFileSync(path, JSON.stringify(v));
    const failures = failuresOf(suites[x.test]!(dir));
    t.ok(failures.some((f) => f.includes(named)), `${x.test}: fails when ${x.file} has a different ${x.what}, naming ${named}`, { failures });
  });
});
