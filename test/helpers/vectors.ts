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
