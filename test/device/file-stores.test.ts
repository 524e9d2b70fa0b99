/**
 * The agent's files on Node (counters, tickets): on real files, each set
 * on disk before it resolves, saves of one burst sharing writes, a failed
 * write refused to its caller without a crash, everything there again
 * after a restart (a new instance on the same file).
 */
import t from 'tap';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FileNumberStore } from '../../runtime/node/file-numbers.js';
import { FileSecretStore } from '../../runtime/node/file-secrets.js';
import { JsonFile } from '../../runtime/node/json-file.js';
import { tempDir } from '../helpers/control-plane.js';

const onDisk = (f: string) => JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;

t.test('a number is on disk when its set resolves; a new instance reads it; the file is 0600', async (t) => {
  const f = join(tempDir(t), 'dev.state');
  const s = new FileNumberStore(f);
  await s.set('tx:dev:config', 64);
  t.same(onDisk(f), { 'tx:dev:config': 64 }, 'on disk at once');
  t.equal(statSync(f).mode & 0o777, 0o600, 'only the owner reads it');
  await s.set('tx:dev:config', 128);
  t.equal(await new FileNumberStore(f).get('tx:dev:config'), 128, 'a restart reads the last value');
});

t.test('saves of one burst share writes; each resolves after a write that holds its value', async (t) => {
  const f = join(tempDir(t), 'burst.json');
  const m: Record<string, number> = {};
  let snapshots = 0;
  const file = new JsonFile(f, () => (snapshots++, { ...m }));
  const done: Promise<unknown>[] = [];
  for (let i = 0; i < 100; i++) {
    m[`k${i}`] = i;
    done.push(file.save().then(() => t.equal((onDisk(f) as Record<string, number>)[`k${i}`], i, `k${i} is on disk when its save resolves`)));
  }
  await Promise.all(done);
  t.ok(snapshots <= 2, `100 saves, ${snapshots} writes`);
  const before = snapshots;
  m.late = 1;
  await file.save();
  t.same(onDisk(f).late, 1, 'a save after the burst gets a write of its own');
  t.equal(snapshots, before + 1, 'one more write');
});

t.test('a write that fails is refused to its caller; the next one succeeds', async (t) => {
  const dir = join(tempDir(t), 'not-yet');
  const s = new FileNumberStore(join(dir, 'dev.state'));
  await t.rejects(s.set('a', 1), { code: 'ENOENT' }, 'no directory: the set is refused, nothing thrown past it');
  mkdirSync(dir);
  await s.set('b', 2);
  t.same(onDisk(join(dir, 'dev.state')), { a: 1, b: 2 }, 'the next write holds both');
});

t.test('tickets: set and delete are on disk when they resolve', async (t) => {
  const f = join(tempDir(t), 'dev.tickets');
  const s = new FileSecretStore(f);
  await s.set('ticket:alice', new Uint8Array([1, 2, 255]));
  t.same(onDisk(f), { 'ticket:alice': '0102ff' }, 'set: on disk');
  t.same([...(await new FileSecretStore(f).get('ticket:alice'))!], [1, 2, 255], 'a restart reads it');
  await s.delete('ticket:alice');
  t.same(onDisk(f), {}, 'delete: on disk');
  t.equal(statSync(f).mode & 0o777, 0o600, '0600');
});
