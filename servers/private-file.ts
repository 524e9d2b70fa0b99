/**
 * Files that hold secrets (kagi.db, keys.json, device and admin files,
 * bundles with a device baked in): written 0600 in one step, so that no
 * reader ever sees them half-written or world-readable, and checked for
 * looser modes where they already exist.
 */
import { chmodSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/**
 * Write `content` to `path` with mode 0600: to a temporary file beside it
 * first (created 0600, so the secret is never readable by others, even for
 * a moment), then renamed over the target. A crash leaves the old file or
 * the new one, never half of one.
 */
export function writePrivateFile(path: string, content: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, content, { mode: PRIVATE_FILE_MODE, flag: 'w' });
    chmodSync(tmp, PRIVATE_FILE_MODE); // a stale tmp of ours may have had another mode
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Make a directory for secrets (0700); an existing one is left as it is (see looserThan). */
export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
}

/**
 * A line for each of `paths` that exists and lets group or others in
 * further than `mode` allows, with the command that fixes it.
 */
export function looserThan(paths: string[], mode: number): string[] {
  const out: string[] = [];
  for (const p of paths) {
    let m: number;
    try {
      m = statSync(p).mode & 0o777;
    } catch {
      continue; // not there: nothing to warn about
    }
    if (m & ~mode & 0o077) out.push(`${p} is mode ${m.toString(8).padStart(4, '0')}, readable beyond its owner (chmod ${mode.toString(8)} ${p})`);
  }
  return out;
}
