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
import Database from 'better-sqlite3';
import { readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { makePrivateDir, writePrivateFile } from './private-file.js';

export const LOCK_DIR = 'locks';

export interface LockHolder {
  pid: number;
  host: string;
  since: string;
  broker?: string;
}

/** Another process holds a duty on this data dir. */
export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';
}

export interface DataDirLock {
  /** Fill in the note once the broker's address is known. */
  describe(broker: string): void;
  release(): void;
}

function holderText(h: LockHolder | undefined): string {
  if (!h) return 'another process (it is starting, or left no note)';
  return `pid ${h.pid} on ${h.host}${h.broker ? `, broker ${h.broker}` : ''}, since ${h.since}`;
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const j = JSON.parse(readFileSync(file, 'utf8')) as LockHolder;
    return typeof j.pid === 'number' ? j : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Lock `duties` on `dir`, all or none. Throws DataDirLockedError naming the
 * holder when any is held.
 */
export function lockDataDir(dir: string, duties: string[]): DataDirLock {
  const locks = join(dir, LOCK_DIR);
  makePrivateDir(locks);
  const held: { db: Database.Database; note: string }[] = [];
  const holder: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  const release = () => {
    for (const h of held.splice(0)) {
      rmSync(h.note, { force: true });
      h.db.close();
    }
  };
  for (const duty of duties) {
    const db = new Database(join(locks, `${duty}.lock`), { timeout: 0 });
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE'); // held, never committed, until the connection closes
    } catch (e) {
      db.close();
      release();
      if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e;
      throw new DataDirLockedError(
        `the ${duty} ${duty === 'broker' ? '' : 'service '}on data dir ${resolve(dir)} is already run by ${holderText(readHolder(join(locks, `${duty}.json`)))}. ` +
          `Stop that kagi up first (or use another --data). Several instances of the services run on --store postgres://… with --instance NAME.`,
      );
    }
    const note = join(locks, `${duty}.json`);
    held.push({ db, note });
    writePrivateFile(note, JSON.stringify(holder) + '\n');
  }
  return {
    describe(broker) {
      for (const h of held) writePrivateFile(h.note, JSON.stringify({ ...holder, broker }) + '\n');
    },
    release,
  };
}
