/**
 * Group commits (servers/store/write-batch.ts, decision 110) on a real
 * SQLite file, watched through a second connection as another process
 * would: writes made in one turn are not visible before their promises
 * resolve and are all visible when any resolves (one commit); each
 * promise carries its write's value; a failing write fails alone. With a
 * WAL sync (decisions 135, 140), a write resolves at its commit and
 * durable() only after an fdatasync of the WAL that began after every
 * commit before the call.
 */
import t, { type Test } from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { IDLE_SYNC_MS, WriteBatch } from '../../servers/store/write-batch.js';
import { walSync, type WalSync } from '../../servers/store/wal-sync.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { settledAfter, tempDir, until } from '../helpers/control-plane.js';

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

const settled = (p: Promise<unknown>) => settledAfter(p);

t.test('a group resolves at its commit; durable() resolves only after a WAL sync that began after every commit before it, in call order; one sync at a time', async (t) => {
  const { dir, file, db, insert } = kvDb(t);
  const h = heldSync(file, dir);
  const batch = new WriteBatch(db, h.sync);
  const keys = () => (db.prepare('SELECT k FROM kv ORDER BY k').all() as { k: string }[]).map((r) => r.k).join('');
  t.ok(await settled(batch.durable()), 'nothing written: durable at once');
  t.equal(await batch.run(() => insert.run('a', 1).changes), 1, 'a write resolves with its value at its commit');
  t.equal(keys(), 'a', 'committed: visible to readers');
  t.equal(db.pragma('synchronous', { simple: true }), 2, 'the connection is back at FULL after the group commit');
  t.equal(h.syncs, 0, 'no sync yet: nobody waits on one');
  const first = batch.durable();
  await waitFor(t, () => h.syncs === 1, 'a caller of durable() starts a sync');
  t.notOk(await settled(first), 'not durable while its sync is under way');
  // A write while the sync runs commits at once, and is not covered by it.
  t.equal(await batch.run(() => insert.run('b', 2).changes), 1, 'a write made during a sync commits without waiting for it');
  t.equal(keys(), 'ab');
  const second = batch.durable();
  const queued = batch.run(() => insert.run('c', 3).changes); // queued: durable() called now covers it too
  const third = batch.durable();
  t.equal(await queued, 1, 'it commits while the sync runs');
  t.equal(h.syncs, 1, 'no second sync while one is under way');
  const order: string[] = [];
  for (const [name, p] of [['second', second], ['third', third], ['first', first]] as const) void p.then(() => order.push(name));
  await h.release(t);
  await first;
  t.notOk(await settled(second), 'a durable() after a commit the sync under way did not cover waits for the next');
  await waitFor(t, () => h.syncs === 2, 'the next sync began at once: someone waits on it');
  await h.release(t);
  await Promise.all([second, third]);
  t.same(order, ['first', 'second', 'third'], 'durable() resolves in call order');
  t.equal(h.syncs, 2, 'nothing left to sync');
  const failing = batch.run(() => insert.run('a', 9));
  await t.rejects(failing, /UNIQUE/, 'a failing write fails at its commit');
});

t.test('a commit nobody waits on is synced IDLE_SYNC_MS after all the same', async (t) => {
  const { dir, file, db, insert } = kvDb(t);
  const h = heldSync(file, dir);
  const batch = new WriteBatch(db, h.sync);
  const t0 = performance.now();
  await batch.run(() => insert.run('a', 1));
  await waitFor(t, () => h.syncs === 1, 'a sync began with nobody waiting');
  t.ok(performance.now() - t0 >= IDLE_SYNC_MS - 5, `not before IDLE_SYNC_MS (${IDLE_SYNC_MS} ms): commits close together share it`);
  await h.release(t);
  t.ok(await settled(batch.durable()), 'then durable at once');
});

t.test('drain: what is queued and what is committed is durable, and every durable() resolved, when it returns', async (t) => {
  const { dir, file, db, insert } = kvDb(t);
  const h = heldSync(file, dir);
  const batch = new WriteBatch(db, h.sync);
  await batch.run(() => insert.run('a', 1).changes);
  const waiting = batch.durable();
  await waitFor(t, () => h.syncs === 1, 'its sync began');
  const queued = batch.run(() => insert.run('b', 2).changes);
  const later = batch.durable();
  batch.drain(); // what the store does before it closes
  t.equal(await queued, 1, 'the queued write committed');
  t.ok((await Promise.all([settled(waiting), settled(later)])).every(Boolean), 'both durable() resolved by the sync drain made at once');
  await h.release(t); // the sync under way answers late: nothing is settled twice
  t.same(db.prepare('SELECT k FROM kv ORDER BY k').all(), [{ k: 'a' }, { k: 'b' }]);
});

t.test('a failed sync refuses durable() and every later write, with the reason', async (t) => {
  const { dir, db, insert } = kvDb(t);
  // A WAL that is not there: the real open fails, as a sync that cannot be done does.
  const batch = new WriteBatch(db, walSync(join(dir, 'missing.db'), dir));
  t.equal((await batch.run(() => insert.run('a', 1))).changes, 1, 'the write committed');
  await t.rejects(batch.durable(), /write-ahead log could not be synced.*ENOENT.*restarted/, 'it is not durable, and durable() says why');
  await t.rejects(batch.durable(), /could not be synced/, 'nor is anything after');
  await t.rejects(batch.run(() => insert.run('b', 2)), /could not be synced/, 'every later write is refused before it is committed');
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
