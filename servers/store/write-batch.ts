/**
 * Group commits for SQLite: small writes issued in the same turn of the
 * event loop run in one transaction, each in its own savepoint (one
 * failing write fails alone), and each caller's promise resolves with its
 * write's value once the group has committed. A rekey of 10,000 members
 * costs a handful of commits instead of 20,000, and the dozen writes of
 * each join in a burst share theirs (decision 110).
 *
 * Durable at the egress (decision 140): a group commits with `synchronous
 * = NORMAL` (the WAL written, not synced) and `durable()` resolves once an
 * fdatasync of the WAL on the thread pool (wal-sync.ts) has covered every
 * commit made before it was called. The services call it before anything
 * leaves them (every publish, service-host.ts; the broker's CONNACK), so
 * nothing a device or another service is told rests on a write a power
 * cut could take back, while the writes of one request that follow each
 * other inside the control plane no longer wait for a sync each: a first
 * join made 9.6 commits and 9.6 syncs, one after another, beside its
 * password hash (decision 135 synced every group before its promises
 * resolved). A sync covers every commit before it (the WAL is one file,
 * written in order), so what survives a power cut is always a prefix of
 * what was committed, and whatever was told survives.
 *
 * One sync runs at a time; it starts when a caller of `durable()` waits
 * for a commit not yet covered, or, for commits nobody waits on (liveness,
 * presence), IDLE_SYNC_MS after them: the window a power cut can take back
 * writes nobody was told of stays that short. At `synchronous = FULL` each
 * group's commit waited on the disk on the event loop: 12.5% of
 * onboarding's re-join window and 29.5% of its first joins' in the
 * profile. Everything else on the connection stays FULL (an admin's
 * writes outside the batch are on disk when they return). A send
 * counter's reservation is made durable before its first number is used
 * (sqlite.ts's numbers wait on `durable()`).
 *
 * A failed sync may have lost what it was to cover (the kernel can drop
 * the pages it could not write), so after it nothing resolves as durable
 * again and nothing more is committed: every `durable()` and every later
 * write is refused with the reason, and the operator restarts.
 */
import type Database from 'better-sqlite3';
import type { WalSync } from './wal-sync.js';

/** How long a commit nobody waits on stays unsynced at most (ms, beside the sync itself). */
export const IDLE_SYNC_MS = 100;

interface Pending {
  fn: () => unknown;
  resolve(v: unknown): void;
  reject(e: unknown): void;
}

/** A caller of durable(): settled once a sync covers commit `upTo`. */
interface Waiter {
  upTo: number;
  resolve(): void;
  reject(e: Error): void;
}

export class WriteBatch {
  private queue: Pending[] = [];
  /** Group commits made so far: each has the next number. */
  private committed = 0;
  /** The last commit a finished sync covered. */
  private synced = 0;
  /** The sync under way (undefined: none), by identity: drain() settles what it covers. */
  private syncing: { upTo: number } | undefined;
  /** Callers of durable(), oldest first: `upTo` never decreases along the list. */
  private waiters: Waiter[] = [];
  /** Syncs commits nobody waits on (IDLE_SYNC_MS). */
  private idle: ReturnType<typeof setTimeout> | undefined;
  /** Why nothing is durable any more (a sync failed). */
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

  /** Run `fn` (its statements) in the next group commit; its value once that has committed (durable: see durable()). */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.failed) return reject(this.failed);
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (this.queue.length === 1) setImmediate(() => this.flush());
    });
  }

  /**
   * Resolves once every write committed before the call, and every write
   * queued then (it commits at the next flush), is on disk. In call order:
   * what waits longer was asked for first.
   */
  durable(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (!this.sync) return Promise.resolve(); // each commit synced as the connection is set to
    const upTo = this.committed + (this.queue.length > 0 ? 1 : 0);
    if (upTo <= this.synced && this.waiters.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ upTo, resolve, reject });
      this.startSync();
    });
  }

  /** Commit what is queued now; each write's promise resolves at the commit. */
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
    this.committed++;
    // A write that failed rolled back alone.
    for (const w of q) {
      if (errors.has(w)) w.reject(errors.get(w));
      else w.resolve(values.get(w));
    }
    this.startSync();
    this.syncSoon();
  }

  /**
   * Before the database closes: commit what is queued and sync at once,
   * so every write made is durable and every durable() resolved when close
   * returns (a sync still under way then finds nothing left to settle).
   * The batch is not used after it.
   */
  drain(): void {
    this.flush();
    clearTimeout(this.idle);
    this.idle = undefined;
    this.syncing = undefined;
    const waiting = this.waiters;
    this.waiters = [];
    try {
      if (this.failed) return waiting.forEach((w) => w.reject(this.failed!));
      if (this.sync && this.committed > this.synced) {
        try {
          this.sync.now();
        } catch (e) {
          return this.fail(e as Error, waiting);
        }
        this.synced = this.committed;
      }
      for (const w of waiting) w.resolve();
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

  /**
   * One sync at a time, for a caller waiting on a commit made (`idle`:
   * for commits nobody waits on); it covers every commit made before it
   * starts.
   */
  private startSync(idle = false): void {
    if (!this.sync || this.syncing || this.failed || this.committed <= this.synced) return;
    if (!idle && !(this.waiters.length > 0 && this.waiters[0]!.upTo <= this.committed)) return;
    clearTimeout(this.idle);
    this.idle = undefined;
    const under = (this.syncing = { upTo: this.committed });
    this.sync.later((e) => {
      if (this.syncing !== under) return; // drained meanwhile: already settled
      this.syncing = undefined;
      if (e) return this.fail(e, this.waiters.splice(0));
      this.synced = under.upTo;
      while (this.waiters.length > 0 && this.waiters[0]!.upTo <= under.upTo) this.waiters.shift()!.resolve();
      // Commits made while it ran: the next sync, now if someone waits on them.
      this.startSync();
      this.syncSoon();
    });
  }

  /** Commits nobody waits on (liveness, presence) are synced IDLE_SYNC_MS after, all the same. */
  private syncSoon(): void {
    if (!this.sync || this.syncing || this.idle || this.committed <= this.synced) return;
    this.idle = setTimeout(() => {
      this.idle = undefined;
      this.startSync(true);
    }, IDLE_SYNC_MS).unref();
  }

  private fail(e: Error, waiting: Waiter[]): void {
    this.failed = new Error(`the database's write-ahead log could not be synced to disk (${e.message}): writes since the last sync may not survive a power cut; nothing more is written through the group commit until kagi up is restarted`);
    for (const w of waiting) w.reject(this.failed);
  }
}
