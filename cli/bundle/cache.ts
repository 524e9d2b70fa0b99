/**
 * Finished bundles kept on disk (DIST/boards/.cache), so a profile is built
 * by rollup once per build of kagi rather than once per `kagi bundle`, per
 * provisioning batch or per test. Only device-free code is kept: a bundle
 * with a device baked in is made from the cached template (build.ts), so no
 * secret key ever lands in the cache.
 *
 * The key is a SHA-256 of what the output depends on: the build options
 * (profile, placeholder or no device), every compiled module the bundle can
 * draw from (DIST's trees but boards/, bench/ and test/) and
 * package-lock.json for the dependencies in node_modules. One process
 * builds a key at a time (a lock file beside it); the others wait for it.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Each dist's stamp, hashed once per process (a build of kagi does not change under a running one). */
const stamps = new Map<string, string>();

/** Hash of the compiled sources every bundle is made from, and of the dependencies' lock. */
export function sourceStamp(dist: string): string {
  const h = createHash('sha256');
  const entries = (dir: string) => (existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1)) : []);
  const walk = (dir: string) => {
    for (const e of entries(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js')) h.update(p).update(readFileSync(p));
    }
  };
  // Every compiled tree but the bundles themselves: a Node profile's bundle
  // starts at cli/board-agent.js and draws on cli/ and servers/ too (a stale
  // agent served from the cache once hid a change to cli/).
  for (const d of entries(dist)) if (d.isDirectory() && !['boards', 'bench', 'test'].includes(d.name)) walk(join(dist, d.name));
  const lock = join(dist, '..', 'package-lock.json');
  if (existsSync(lock)) h.update(readFileSync(lock));
  return h.digest('hex');
}

/** Builds under way in this process, by cache file: one rollup run per key. */
const building = new Map<string, Promise<string>>();

/** Is the process that wrote this lock file still running? */
function holderAlive(lock: string): boolean {
  try {
    const pid = Number(readFileSync(lock, 'utf8'));
    // No pid yet: just made, or its maker died before writing one.
    if (!(pid > 0)) return Date.now() - statSync(lock).mtimeMs < 10_000;
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it runs, as another user. Anything else (ESRCH, no file, no pid): gone.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Build into `file` unless another process is already building it (its pid
 * in `file`.lock): then wait for its result, so processes started together
 * (test files run in parallel, a provisioning batch beside `kagi bundle`)
 * share one rollup run. A lock left by a process that died is taken over.
 */
async function buildOnce(file: string, build: () => Promise<string>): Promise<string> {
  const lock = `${file}.lock`;
  for (;;) {
    if (existsSync(file)) return readFileSync(file, 'utf8');
    let fd: number;
    try {
      fd = openSync(lock, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (!holderAlive(lock)) rmSync(lock, { force: true });
      else await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    try {
      writeSync(fd, String(process.pid));
      closeSync(fd);
      const code = await build();
      const tmp = `${file}.tmp-${process.pid}`;
      writeFileSync(tmp, code);
      renameSync(tmp, file);
      return code;
    } finally {
      rmSync(lock, { force: true });
    }
  }
}

/** Where the output for `options` is kept. */
export function cacheFile(dist: string, options: unknown): string {
  let stamp = stamps.get(dist);
  if (stamp === undefined) stamps.set(dist, (stamp = sourceStamp(dist)));
  const key = createHash('sha256').update(stamp).update(JSON.stringify(options)).digest('hex').slice(0, 32);
  return join(dist, 'boards', '.cache', `${key}.js`);
}

/** The cached output for `options`, or build it, keep it, and return it. */
export async function cachedBuild(dist: string, options: unknown, build: () => Promise<string>): Promise<string> {
  const file = cacheFile(dist, options);
  if (existsSync(file)) return readFileSync(file, 'utf8');
  mkdirSync(dirname(file), { recursive: true });
  let pending = building.get(file);
  if (!pending) {
    pending = buildOnce(file, build).finally(() => building.delete(file));
    building.set(file, pending);
  }
  return pending;
}
