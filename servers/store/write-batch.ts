/**
 * Group commits for SQLite: small writes issued in the same turn of the
 * event loop run in one transaction, each in its own savepoint (one
 * failing write fails alone), and each caller's promise resolves only once
 * the write is durable. A rekey of 10,000 members costs a handful of
 * commits instead of 20,000, and the dozen writes of each join in a burst
 * share theirs (decision 110).
 *
 * Durable without blocking the event loop (decision 135): given a WalSync,
 * a group commits with `synchronous = NORMAL` (the WAL written, not
 * synced) and its promises resolve after the next fdatasync of the WAL on
 * the thread pool, which covers every commit before it. One sync runs at a
 * time; the writes made while it runs are committed when it ends, as one
 * group, and get the next sync. They would wait for that sync anyway, and
 * under load one commit and one sync then serve the writes of many joins
 * (a commit writes every page it changed to the WAL: fewer commits, fewer
 * pages written). At `synchronous = FULL` each group's
 * commit waited on the disk on the event loop: 12.5% of onboarding's
 * re-join window and 29.5% of its first joins' in the profile.
 * Everything else on the connection stays FULL. A send counter's
 * reservation is still on disk before its first number is used: its
 * caller awaits the write. What changes: a write is visible to other
 * readers from its commit, up to one sync before it is durable, and a
 * write made during a sync is committed when that sync ends, not at the
 * next turn (nobody reads before awaiting a write, decision 110).
 *
 * A failed sync may have lost what it was to cover (the kernel can drop
 * the pages it could not write), so nothing committed through the batch
 * after it resolves as durable again: every write waiting and every later
 * one is refused with the reason, and the operator restarts.
 */
import type Database from 'better-sqlite3';
import type { WalSync } from './wal-sync.js';

interface Pending {
  fn: () => unknown;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** A committed write waiting for its sync: its promise settles with `ok` or `fail`. */
interface Committed {
  ok(): void;
  fail(e: Error): void;
}

export class WriteBatch {
  private queue: Pending[] = [];
  /** Committed since the sync under way began: they wait for the next. */
  private unsynced: Committed[] = [];
  /** Committed before the sync under way began (undefined: none under way). */
  private syncing: Committed[] | undefined;
  /** Why nothing resolves as durable any more (a sync failed). */
  private failed: Error | undefined;
  /**
   * A write in a savepoint of the batch, and the batch in one transaction:
   * better-sqlite3's wrappers, made once (making one per write was 3% of
   * `kagi up` in a restart storm). Called inside `commit`, `savepoint`
   * nests as a savepoint.
   */
  private readonly savepoint: (fn: () => unknown) => unknown;
  private readonly commit: (q: Pending[], values: Map<Pending, unknown>, errors: Map<Pending, unknown>) => void;
  /** The connection's sync level for a group commit, and back (prepared once). */
  private readonly unsyncedCommits?: { enter: Database.Statement; leave: Database.Statement };

  /** Without `sync`, each group commit syncs as the connection is set to (tests of grouping alone). */
  constructor(db: Database.Database, private readonly sync?: WalSync) {
    this.savepoint = db.transaction((fn: () => unknown) => fn());
    this.commit = db.transaction((q: Pending[], values: Map<Pending, unknown>, errors: Map<Pending, unknown>) => {
      for (const w of q) {
        try {
          values.set(w, this.savepoint(w.fn));
        } catch (e) {
          errors.set(w, e);
        }
      }
    });
    if (sync) this.unsyncedCommits = { enter: db.prepare('PRAGMA synchronous = NORMAL'), leave: db.prepare('PRAGMA synchronous = FULL') };
  }

  /** Run `fn` (its statements) in the next group commit; its value once that is durable. */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.failed) return reject(this.failed);
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      // While a sync runs, what queues waits for its end (startSync).
      if (this.queue.length === 1 && !this.syncing) setImmediate(() => this.flush());
    });
  }

  /** Commit what is queued now; its promises resolve after the next sync. */
  flush(): void {
    const q = this.queue;
    this.queue = [];
    if (q.length === 0) return;
    if (this.failed) return q.forEach((w) => w.reject(this.failed));
    const errors = new Map<Pending, unknown>();
    const values = new Map<Pending, unknown>();
    try {
      this.commitGroup(q, values, errors);
    } catch (e) {
      for (const w of q) w.reject(e); // the commit itself failed: nothing was written
      return;
    }
    for (const w of q) {
      // A write that failed rolled back alone: nothing of it to wait for.
      if (errors.has(w)) w.reject(errors.get(w));
      else if (!this.sync) w.resolve(values.get(w));
      else this.unsynced.push({ ok: () => w.resolve(values.get(w)), fail: (e) => w.reject(e) });
    }
    this.startSync();
  }

  /**
   * Before the database closes: commit what is queued and sync at once,
   * so every write made is durable and resolved when close returns (a
   * sync still under way then finds nothing left to settle). The batch
   * is not used after it.
   */
  drain(): void {
    this.flush();
    const waiting = [...(this.syncing ?? []), ...this.unsynced];
    this.syncing = undefined;
    this.unsynced = [];
    try {
      if (waiting.length === 0 || this.failed) return;
      try {
        this.sync!.now();
      } catch (e) {
        return this.fail(e as Error, waiting);
      }
      for (const c of waiting) c.ok();
    } finally {
      this.sync?.close();
    }
  }

  private commitGroup(q: Pending[], values: Map<Pending, unknown>, errors: Map<Pending, unknown>): void {
    if (!this.unsyncedCommits) return this.commit(q, values, errors);
    this.unsyncedCommits.enter.run();
    try {
      this.commit(q, values, errors);
    } finally {
      this.unsyncedCommits.leave.run();
    }
  }

  private startSync(): void {
    if (!this.sync || this.syncing || this.unsynced.length === 0) return;
    const covered = (this.syncing = this.unsynced);
    this.unsynced = [];
    this.sync.later((e) => {
      if (this.syncing !== covered) return; // drained meanwhile: already settled
      this.syncing = undefined;
      if (e) {
        this.fail(e, [...covered, ...this.unsynced.splice(0)]);
        return this.flush(); // refuses what queued meanwhile
      }
      for (const c of covered) c.ok();
      // What queued while it ran commits now, as one group, and gets the next sync.
      if (this.queue.length > 0) this.flush();
      else this.startSync();
    });
  }

  private fail(e: Error, waiting: Committed[]): void {
    this.failed = new Error(`the database's write-ahead log could not be synced to disk (${e.message}): writes since the last sync may not survive a power cut; nothing more is written through the group commit until kagi up is restarted`);
    for (const c of waiting) c.fail(this.failed);
  }
}
