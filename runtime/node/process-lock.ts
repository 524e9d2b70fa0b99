/**
 * An exclusive lock held for a process's lifetime, beside a note that says
 * who holds it. Used for what two processes must never run at once: a
 * control plane's duties on a data dir (servers/data-dir-lock.ts) and an
 * agent on a device file (cli/agent-lock.ts).
 *
 * The lock is an SQLite database held in an exclusive transaction: the
 * operating system's file lock behind it goes with the process, so a
 * kill -9 leaves no stale lock to clean up by hand (a pid file would, and
 * a reused pid would then keep it "held"). The note beside it is only for
 * the refusal message; the lock is the truth.
 */
import Database from 'better-sqlite3';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** The note is read only for a refusal message, which takes a half-written one as none. */
const writeNote = (file: string, h: LockHolder) => writeFileSync(file, JSON.stringify(h) + '\n', { mode: 0o600 });

export interface LockHolder {
  pid: number;
  host: string;
  since: string;
  broker?: string;
}

export interface ProcessLock {
  /** Rewrite the note with more about the holder (e.g. its broker). */
  describe(extra: Partial<LockHolder>): void;
  release(): void;
}

/** Who the note says holds the lock, if it says. */
export function lockHolder(note: string): LockHolder | undefined {
  try {
    const j = JSON.parse(readFileSync(note, 'utf8')) as LockHolder;
    return typeof j.pid === 'number' ? j : undefined;
  } catch {
    return undefined;
  }
}

/** "pid N on HOST, since T" for a refusal, or who it may be when there is no note. */
export function holderText(h: LockHolder | undefined): string {
  if (!h) return 'another process (it is starting, or left no note)';
  return `pid ${h.pid} on ${h.host}${h.broker ? `, broker ${h.broker}` : ''}, since ${h.since}`;
}

/** Take the lock at `path` (an SQLite file), its holder named in `note`; null when another process holds it. */
export function takeLock(path: string, note: string): ProcessLock | null {
  const db = new Database(path, { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE'); // held, never committed, until the connection closes
  } catch (e) {
    db.close();
    if ((e as { code?: string }).code === 'SQLITE_BUSY') return null;
    throw e;
  }
  const holder: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  writeNote(note, holder);
  let held = true;
  return {
    describe(extra) {
      if (held) writeNote(note, { ...holder, ...extra });
    },
    release() {
      if (!held) return;
      held = false;
      rmSync(note, { force: true });
      db.close();
    },
  };
}
