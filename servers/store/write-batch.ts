/**
 * Group commits for SQLite: small writes issued in the same turn of the
 * event loop run in one transaction, and each caller's promise resolves
 * only after that transaction committed. Durability per write is what it
 * was (a send counter's reservation is on disk before it is used), but a
 * rekey of 10,000 members costs a handful of fsyncs instead of 20,000.
 * Each write runs in its own savepoint, so one failing write fails alone.
 */
import type Database from 'better-sqlite3';

interface Pending {
  fn: () => void;
  resolve(): void;
  reject(e: unknown): void;
}

export class WriteBatch {
  private queue: Pending[] = [];

  constructor(private readonly db: Database.Database) {}

  run(fn: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ fn, resolve, reject });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  /** Commit what is queued now (also called before the database closes). */
  flush(): void {
    const q = this.queue;
    this.queue = [];
    if (q.length === 0) return;
    const errors = new Map<Pending, unknown>();
    try {
      this.db.transaction(() => {
        for (const w of q) {
          try {
            this.db.transaction(w.fn)(); // a savepoint inside the batch
          } catch (e) {
            errors.set(w, e);
          }
        }
      })();
    } catch (e) {
      for (const w of q) w.reject(e); // the commit itself failed: nothing was written
      return;
    }
    for (const w of q) (errors.has(w) ? w.reject(errors.get(w)) : w.resolve());
  }
}
