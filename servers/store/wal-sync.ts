/**
 * Makes a SQLite database's write-ahead log durable: fdatasync of the WAL
 * file, on libuv's thread pool (`later`) or at once (`now`, before the
 * database closes). The group commit (write-batch.ts) commits without a
 * sync and calls this before any write's promise resolves, so the sync no
 * longer blocks the event loop (decision 135).
 *
 * The WAL is opened once, at the first sync (a commit has made it by
 * then), and kept: SQLite resets and truncates it in place while the
 * database is open and removes it only when the last connection closes,
 * so it stays the same file. One thread-pool job per sync, not three
 * (an open and a close around each were two more hand-offs between
 * threads, while the hash pool's threads hold the cores). The directory
 * is synced at that first open too, so a WAL file made in this run is
 * found after a power cut.
 */
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, openSync } from 'node:fs';

export interface WalSync {
  /** Sync what was written so far, off the event loop; `done` once it is on disk, or with why not. */
  later(done: (e: Error | null) => void): void;
  /** Sync what was written so far before returning (throws if it cannot). */
  now(): void;
  /** Let go of the file (the database is closing; a sync under way then has nothing left to settle). */
  close(): void;
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function walSync(dbFile: string, dir: string): WalSync {
  const wal = `${dbFile}-wal`;
  let fd: number | undefined;
  const walFd = (): number => {
    if (fd !== undefined) return fd;
    const opened = openSync(wal, 'r');
    try {
      fsyncPath(dir);
    } catch (e) {
      closeSync(opened);
      throw e;
    }
    return (fd = opened);
  };
  return {
    later(done) {
      let f: number;
      try {
        f = walFd();
      } catch (e) {
        return done(e as Error);
      }
      fdatasync(f, (e) => done(e));
    },
    now: () => fdatasyncSync(walFd()),
    close() {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}
