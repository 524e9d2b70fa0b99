/**
 * The agent's files on Node (counters, tickets): on real files, each set
 * on disk before it resolves, saves of one burst sharing writes, a failed
 * write refused to its caller without a crash, everything there again
 * after a restart (a new instance on the same file).
 */
import t from 'tap';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { FileNumberStore } from '../../runtime/node/file-numbers.js';
import { FileSecretStore } from '../../runtime/node/file-secrets.js';
import { JsonFile } from '../../runtime/node/json-file.js';
import { SendCounter } from '../../protocol/replay.js';
import { tempDir } from '../helpers/control-plane.js';

const onDisk = (f: string) => JsonFile.read<Record<string, unknown>>(f)!;

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

t.test('a write out of file handles waits for one and saves; it does not fail what was saved', async (t) => {
  const f = join(tempDir(t), 'handles.json');
  const file = new JsonFile(f, () => ({ 'ticket:alice': 'rotated' }));
  // This process's soft limit, lowered to what is open now and a few more
  // (prlimit, util-linux), then every one of those taken: a host of many
  // agents saving at once, each with its connection open.
  const limits = () => /Max open files\s+(\d+)\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))!;
  const [, soft, hard] = limits();
  const open = readdirSync('/proc/self/fd').length;
  const prlimit = (n: string) => execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${n}:${hard}`]);
  prlimit(String(open + 16));
  const held: number[] = [];
  const release = () => {
    for (const fd of held.splice(0)) closeSync(fd);
    prlimit(soft!);
  };
  t.teardown(release);
  try {
    for (;;) held.push(openSync('/dev/null', 'r'));
  } catch (e) {
    t.equal((e as NodeJS.ErrnoException).code, 'EMFILE', 'every handle taken');
  }
  let settled = false;
  const saved = file.save().finally(() => (settled = true));
  await new Promise((r) => setTimeout(r, 200)); // the window with no handle free
  t.notOk(settled, 'the save waits while no handle is free (it neither resolved nor failed)');
  release();
  await saved;
  t.same(onDisk(f), { 'ticket:alice': 'rotated' }, 'and is on disk once one is');
});

t.test('saves in one turn share one write, even when each comes a few promise steps after the last (decision 120)', async (t) => {
  const f = join(tempDir(t), 'turn.json');
  const m: Record<string, number> = {};
  let writes = 0;
  const file = new JsonFile(f, () => (writes++, { ...m }));
  // As an agent's start does: each reservation awaits a read first, so its save comes a step later.
  const step = async (k: string, depth: number) => {
    for (let i = 0; i < depth; i++) await Promise.resolve();
    m[k] = depth;
    await file.save();
  };
  await Promise.all([step('connect', 0), step('auth', 3), step('config', 5), step('keys', 8)]);
  t.equal(writes, 1, 'four saves of one turn: one write');
  t.same(onDisk(f), { connect: 0, auth: 3, config: 5, keys: 8 }, 'holding all four');
});

t.test('an agent reserves its counters for every service at start: with its CONNECT, one write of its state file', async (t) => {
  const f = join(tempDir(t), 'dev.state');
  const proto = JsonFile.prototype as unknown as { write(): Promise<void> };
  const write = proto.write;
  let writes = 0;
  proto.write = function (this: unknown) {
    writes++;
    return write.call(this);
  };
  t.teardown(() => void (proto.write = write));
  const random = (n: number) => new Uint8Array(n).fill(7);
  /** One start of the agent: reserve for the services and take a CONNECT number, as session.ts and the link do. */
  const start = async () => {
    const numbers = new FileNumberStore(f);
    const peers = new SendCounter(numbers, 64, 'tx:dev:', random);
    const connect = new SendCounter(numbers, 16, 'connect:dev:', random);
    writes = 0;
    await Promise.all([...['auth', 'config', 'keys'].map((s) => peers.reserve(s)), connect.take('broker')]);
    return { peers, writes };
  };
  await start(); // the first start also draws and writes each peer's era
  const { peers, writes: atStart } = await start();
  t.equal(atStart, 1, 'a restart: three reservations and a CONNECT number in one write');
  t.same(Object.keys(onDisk(f)).filter((k) => !k.startsWith('era:')).sort(), ['connect:dev:broker', 'tx:dev:auth', 'tx:dev:config', 'tx:dev:keys'], 'with every block in it');
  t.equal(await peers.take('auth'), 65, 'the first message to auth takes the reserved block\'s first number (the last run\'s block skipped whole)');
  t.equal(writes, 1, 'and writes nothing more');
  const again = new SendCounter(new FileNumberStore(f), 64, 'tx:dev:', random);
  t.equal(await again.take('auth'), 129, 'after another restart this block is skipped whole too: no number is used twice');
});
