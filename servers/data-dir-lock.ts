/**
 * One control plane per data dir: each duty a process runs on a data dir
 * (the embedded broker, auth, config, keys) is held under an exclusive lock
 * for the process's lifetime, so a second `kagi up` on the same dir is
 * refused instead of polling members through a broker they are not on and
 * evicting them all. Running the services one per process stays possible:
 * they lock different duties.
 *
 * The lock is an SQLite database per duty (DIR/locks/NAME.lock) held in an
 * exclusive transaction: the operating system's file lock behind it goes
 * with the process, so a kill -9 leaves no stale lock to clean up by hand.
 * Beside it, NAME.json says who holds it (pid, host, broker, since) for
 * the refusal message; it is only a note, the lock is the truth.
 */
import { join, resolve } from 'node:path';
import { makePrivateDir } from './private-file.js';
import { holderText, lockHolder, takeLock, type ProcessLock } from '../runtime/node/process-lock.js';

export type { LockHolder } from '../runtime/node/process-lock.js';

export const LOCK_DIR = 'locks';

/** Another process holds a duty on this data dir. */
export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';
}

export interface DataDirLock {
  /** Fill in the note once the broker's address is known. */
  describe(broker: string): void;
  release(): void;
}

/**
 * Lock `duties` on `dir`, all or none. Throws DataDirLockedError naming the
 * holder when any is held.
 */
export function lockDataDir(dir: string, duties: string[]): DataDirLock {
  const locks = join(dir, LOCK_DIR);
  makePrivateDir(locks);
  const held: ProcessLock[] = [];
  const release = () => {
    for (const h of held.splice(0)) h.release();
  };
  for (const duty of duties) {
    const note = join(locks, `${duty}.json`);
    const lock = takeLock(join(locks, `${duty}.lock`), note);
    if (!lock) {
      release();
      throw new DataDirLockedError(
        `the ${duty} ${duty === 'broker' ? '' : 'service '}on data dir ${resolve(dir)} is already run by ${holderText(lockHolder(note))}. ` +
          `Stop that kagi up first (or use another --data). Several instances of the services run on --store postgres://… with --instance NAME.`,
      );
    }
    held.push(lock);
  }
  return {
    describe(broker) {
      for (const h of held) h.describe({ broker });
    },
    release,
  };
}
