/**
 * Group commits (servers/store/write-batch.ts, decision 110) on a real
 * SQLite file, watched through a second connection as another process
 * would: writes made in one turn are not visible before their promises
 * resolve and are all visible when any resolves (one commit); each
 * promise carries its write's value; a failing write fails alone.
 */
import t from 'tap';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { WriteBatch } from '../../servers/store/write-batch.js';
import { tempDir } from '../helpers/control-plane.js';

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
