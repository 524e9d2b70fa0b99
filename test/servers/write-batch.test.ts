/**
 * Group commits (servers/store/write-batch.ts, decision 110) on a real
 * SQLite file, watched through a second connection as another process
 * would: writes made in one turn are not visible before their promises
 * resolve and are all visible when any resolves (one commit); each
 * promise carries its write's value; a failing write fails alone. With a
 * WAL sync (decision 135), a write resolves only after an fdatasync of
 * the WAL that began after its commit.
 */
import t, { type Test } from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { WriteBatch } from '../../servers/store/write-batch.js';
import { walSync, type WalSync } from '../../servers/store/wal-sync.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { tempDir, until } from '../helpers/control-plane.js';

/** Waits for a state the test's own writes or the thread pool reach (generous: a busy machine). */
const waitFor = async (t: Test, cond: () => boolean, what: string) => t.ok(await until(cond, 10_000), what);

t.test('writes of one turn commit together; each resolves after the commit, with its value; a failure fails alone', async (t) => {
  const file = join(tempDir(t), 'batch.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)');
  const other = new Database(file, { readonly: true });
  t.teardown(() => (db.close(), other.close()));
  const seen = () => (other.prepare('SELECT k FROM kv ORDER BY k').all() as { k: string }[]).map((r) => r.k);
  const insert = db.prepare('INSERT INTO kv VALUES (?, ?)');
  const batch = new WriteBatch(db);

  const writes = ['a', 'b', 'c'].map((k, i) => batch.run(() => insert.run(k, i).changes));
  const failing = batch.run(() => insert.run('a', 9)); // the key is taken: this one fails
  const last = batch.run(() => (insert.run('d', 3), 'value of d'));
  t.same(seen(), [], 'nothing is visible before the commit');
  const order: string[] = [];
  await Promise.all([
    ...writes.map((w) => w.then((v) => order.push(`ok ${v} ${seen().join('')}`))),
    failing.then(() => order.push('failing resolved'), (e: Error) => order.push(`failed ${/UNIQUE/.test(e.message)}`)),
    last.then((v) => order.push(`${v} ${seen().join('')}`)),
  ]);
  t.same(order, ['ok 1 abcd', 'ok 1 abcd', 'ok 1 abcd', 'failed true', 'value of d abcd'], 'every write resolves once all of the batch is committed, with its own value; the failing one rejects');
  t.same(db.prepare('SELECT v FROM kv WHERE k = ?').get('a'), { v: 0 }, 'the failing write changed nothing');

  const next = batch.run(() => insert.run('e', 4).changes);
  batch.flush(); // what the store does before it closes
  t.same(seen(), ['a', 'b', 'c', 'd', 'e'], 'flush commits what is queued at once');
  t.equal(await next, 1);
});

/**
 * Decision 135: with a WAL sync, a group commits unsynced and its writes
 * resolve after the next fdatasync of the WAL (the real one, on the thread
 * pool), held here until the test lets it finish, to see the order.
 */
function heldSync(file: string, dir: string) {
  const real = walSync(file, dir);
  const held: (() => void)[] = [];
  let syncs = 0;
  const sync: WalSync = {
    later(done) {
      syncs++;
      // The real sync runs now; its answer waits for release().
      real.later((e) => held.push(() => done(e)));
    },
    now: () => real.now(),
    close: () => real.close(),
  };
  return {
    sync,
    get syncs() {
      return syncs;
    },
    /** Let the oldest sync answer, once it has (waits for the real fdatasync). */
    async release(t: Test): Promise<void> {
      await waitFor(t, () => held.length > 0, 'a sync done on the thread pool');
      held.shift()!();
    },
  };
}

function kvDb(t: Test) {
  const dir = tempDir(t);
  const file = join(dir, 'batch.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)');
  t.teardown(() => db.close());
  return { dir, file, db, insert: db.prepare('INSERT INTO kv VALUES (?, ?)') };
}

/** Whether `p` has settled, after the turns the test lets pass. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return done;
}

t.test('a group resolves only after a WAL sync that began after its commit; writes made during a sync commit when it ends, together, and share the next', async (t) => {
  const { dir, file, db, insert } = kvDb(t);
  const h = heldSync(file, dir);
  const batch = new WriteBatch(db, h.sync);
  const keys = () => (db.prepare('SELECT k FROM kv ORDER BY k').all() as { k: string }[]).map((r) => r.k).join('');
  const first = batch.run(() => insert.run('a', 1).changes);
  await waitFor(t, () => h.syncs === 1, 'the first group committed and its sync began');
  t.equal(keys(), 'a', 'committed: visible to readers before it is durable');
  t.equal(db.pragma('synchronous', { simple: true }), 2, 'the connection is back at FULL after the group commit');
  t.notOk(await settled(first), 'not resolved while its sync is under way');
  // Two writes while the first sync runs: queued until it ends.
  const second = batch.run(() => insert.run('b', 2).changes);
  const third = batch.run(() => insert.run('c', 3).changes);
  t.notOk(await settled(second), 'a write made during a sync waits');
  t.equal(keys(), 'a', 'and is not committed yet');
  t.equal(h.syncs, 1, 'no second sync while one is under way');
  await h.release(t);
  t.equal(await first, 1, 'the first group resolves with its value once its sync is done');
  await waitFor(t, () => h.syncs === 2, 'the writes made meanwhile committed as one group, and its sync began');
  t.equal(keys(), 'abc', 'both committed');
  t.notOk(await settled(second), 'they wait for that sync');
  t.notOk(await settled(third));
  await h.release(t);
  t.same([await second, await third], [1, 1], 'both resolve on the one sync');
  t.equal(h.syncs, 2, 'nothing left to sync');
  const failing = batch.run(() => insert.run('a', 9));
  await t.rejects(failing, /UNIQUE/, 'a failing write fails at its commit, without waiting for a sync');
});

t.test('drain: what is queued and what waits on a sync is durable and resolved when it returns', async (t) => {
  const { dir, file, db, insert } = kvDb(t);
  const h = heldSync(file, dir);
  const batch = new WriteBatch(db, h.sync);
  const waiting = batch.run(() => insert.run('a', 1).changes);
  await waitFor(t, () => h.syncs === 1, 'its sync began');
  const queued = batch.run(() => insert.run('b', 2).changes);
  batch.drain(); // what the store does before it closes
  t.same([await waiting, await queued], [1, 1], 'both resolved by the sync drain made at once');
  await h.release(t); // the sync under way answers late: nothing is settled twice
  t.same(db.prepare('SELECT k FROM kv ORDER BY k').all(), [{ k: 'a' }, { k: 'b' }]);
});

t.test('a failed sync refuses the writes it was to cover and every later one, with the reason', async (t) => {
  const { dir, db, insert } = kvDb(t);
  // A WAL that is not there: the real open fails, as a sync that cannot be done does.
  const batch = new WriteBatch(db, walSync(join(dir, 'missing.db'), dir));
  await t.rejects(batch.run(() => insert.run('a', 1)), /write-ahead log could not be synced.*ENOENT.*restarted/, 'the write is refused with why');
  await t.rejects(batch.run(() => insert.run('b', 2)), /could not be synced/, 'and every later one, before it is committed');
  t.same(db.prepare('SELECT k FROM kv').all(), [{ k: 'a' }], 'the refused later write was not committed');
});

t.test('a SQLite store commits at FULL outside its group commit, on its first open and again (better-sqlite3 puts a WAL connection at NORMAL)', async (t) => {
  const dir = tempDir(t);
  for (const run of ['first', 'second']) {
    const store = new SqliteStore(dir);
    const db = (store as unknown as { db: Database.Database }).db;
    t.equal(db.pragma('synchronous', { simple: true }), 2, `${run} open: synchronous = FULL`);
    await store.close();
  }
});
