/**
 * Group commits for SQLite: small writes issued in the same turn of the
 * event loop run in one transaction, and each caller's promise resolves
 * only after that transaction committed. Durability per write is what it
 * was (a send counter's reservation is on disk before it is used), but a
 * rekey of 10,000 members costs a handful of fsyncs instead of 20,000, and
 * the dozen writes of each join in a burst share their commits (a commit
 * here is an fsync of the WAL, ~150 µs, on the event loop).
 * Each write runs in its own savepoint, so one failing write fails alone.
 */
import type Database from 'better-sqlite3';

interface Pending {
  fn: () => unknown;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

export class WriteBatch {
  private queue: Pending[] = [];
  /**
   * A write in a savepoint of the batch, and the batch in one transaction:
   * better-sqlite3's wrappers, made once (making one per write was 3% of
   * `kagi up` in a restart storm). Called inside `commit`, `savepoint`
   * nests as a savepoint.
   */
  private readonly savepoint: (fn: () => unknown) => unknown;
  private readonly commit: (q: Pending[], values: Map<Pending, unknown>, errors: Map<Pending, unknown>) => void;

  constructor(db: Database.Database) {
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
  }

  /** Run `fn` (its statements) in the next group commit; its value once that committed. */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  /** Commit what is queued now (also called before the database closes). */
  flush(): void {
    const q = this.queue;
    this.queue = [];
    if (q.length === 0) return;
    const errors = new Map<Pending, unknown>();
    const values = new Map<Pending, unknown>();
    try {
      this.commit(q, values, errors);
    } catch (e) {
      for (const w of q) w.reject(e); // the commit itself failed: nothing was written
      return;
    }
    for (const w of q) (errors.has(w) ? w.reject(errors.get(w)) : w.resolve(values.get(w)));
  }
}
