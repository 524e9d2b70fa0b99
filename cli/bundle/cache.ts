/**
 * Finished bundles kept on disk (DIST/boards/.cache), so a profile is built
 * by rollup once per build of kagi rather than once per `kagi bundle`, per
 * provisioning batch or per test. Only device-free code is kept: a bundle
 * with a device baked in is made from the cached template (build.ts), so no
 * secret key ever lands in the cache.
 *
 * The key is a SHA-256 of what the output depends on: the build options
 * (profile, placeholder or no device), every compiled module the bundle can
 * draw from (DIST's device/, protocol/ and runtime/ trees) and
 * package-lock.json for the dependencies in node_modules.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

let stamp: string | undefined;

/** Hash of the sources every bundle is made from, once per process. */
function sourceStamp(dist: string): string {
  if (stamp !== undefined) return stamp;
  const h = createHash('sha256');
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js')) h.update(p).update(readFileSync(p));
    }
  };
  for (const d of ['device', 'protocol', 'runtime']) walk(join(dist, d));
  const lock = join(dist, '..', 'package-lock.json');
  if (existsSync(lock)) h.update(readFileSync(lock));
  return (stamp = h.digest('hex'));
}

/** The cached output for `options`, or build it, keep it, and return it. */
export async function cachedBuild(dist: string, options: unknown, build: () => Promise<string>): Promise<string> {
  const key = createHash('sha256').update(sourceStamp(dist)).update(JSON.stringify(options)).digest('hex').slice(0, 32);
  const dir = join(dist, 'boards', '.cache');
  const file = join(dir, `${key}.js`);
  if (existsSync(file)) return readFileSync(file, 'utf8');
  const code = await build();
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, code);
  renameSync(tmp, file); // concurrent builders of one key write the same bytes
  return code;
}
