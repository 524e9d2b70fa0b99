/**
 * Run one of the project's TypeScript entry points in a child process: its
 * build in dist/ (what `npm test` makes first) when the build is at least
 * as new as every source, otherwise the .ts itself through tap's loader,
 * which compiles it in every process (seconds per spawn on a busy machine,
 * against a fraction of one). A stale build is never what a test checks.
 * Coverage maps back to the .ts files through the build's source maps.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const tsLoader = pathToFileURL(join(require.resolve('@tapjs/typescript/package.json'), '..', 'dist/esm/import.mjs')).href;

/** Newest modification time of the .ts files under `dirs`. */
function newestSource(dirs: string[]): number {
  let newest = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of dirs) if (existsSync(d)) walk(d);
  return newest;
}

const SOURCES = ['protocol', 'device', 'servers', 'broker', 'network', 'runtime', 'cli', 'test'];
let built: boolean | undefined;

/** Is dist/ current? Checked once per test process. */
function buildIsCurrent(): boolean {
  if (built === undefined) {
    const probe = join('dist', 'cli', 'kagi.js');
    built = existsSync(probe) && statSync(probe).mtimeMs >= newestSource(SOURCES);
    if (!built) console.error('test/helpers/built.ts: dist/ is older than the sources (npm run build): spawning TypeScript through the loader, which is much slower');
  }
  return built;
}

/** Node arguments that run `tsPath` (relative to the project root, e.g. cli/kagi.ts). */
export function nodeArgs(tsPath: string): string[] {
  return buildIsCurrent() ? ['--enable-source-maps', join('dist', tsPath.replace(/\.ts$/, '.js'))] : [`--import=${tsLoader}`, tsPath];
}
