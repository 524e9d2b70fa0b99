/**
 * Reads the published vectors from ../shared/vectors at test time (never a
 * copy), so altering any expected value there makes the suite fail.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
export { fromHex as hex, toHex } from '../../protocol/bytes.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Project root is two levels up from test/helpers (works from dist/ too). */
function root(): string {
  let d = here;
  for (let i = 0; i < 5; i++) {
    try {
      readFileSync(join(d, 'package.json'));
      return d;
    } catch {
      d = dirname(d);
    }
  }
  throw new Error('project root not found');
}

export const VECTORS_DIR = process.env.KAGI_VECTORS ?? join(root(), '..', 'shared', 'vectors');

export function loadVectors<T = any>(rel: string): T {
  return JSON.parse(readFileSync(join(VECTORS_DIR, rel), 'utf8')) as T;
}

/**
 * Run `ok(group, case)` over every case of a Wycheproof file; assert that
 * all numberOfTests cases were checked and list the tcIds that failed.
 */
export function eachWycheproofCase(
  t: { equal(a: unknown, b: unknown, m: string): void; same(a: unknown, b: unknown, m: string): void },
  file: { numberOfTests: number; testGroups: { tests: { tcId: number }[] }[] },
  ok: (group: any, v: any) => boolean,
): void {
  const wrong: number[] = [];
  let checked = 0;
  for (const g of file.testGroups) {
    for (const v of g.tests) {
      checked++;
      if (!ok(g, v)) wrong.push(v.tcId);
    }
  }
  t.equal(checked, file.numberOfTests, `all ${file.numberOfTests} cases checked`);
  t.same(wrong, [], 'every case gives its expected result');
}
