/**
 * The bundle cache builds each key once: callers in one process share the
 * build, a process that finds another's lock waits for its file, and a lock
 * left by a process that is gone is taken over (cli/bundle/cache.ts).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cacheFile, cachedBuild, sourceStamp } from '../../cli/bundle/cache.js';
import { tempDir } from '../helpers/control-plane.js';

t.test('callers in one process share one build', async (t) => {
  const dist = tempDir(t);
  let builds = 0;
  const build = async () => (builds++, 'code-a');
  const got = await Promise.all([1, 2, 3].map(() => cachedBuild(dist, { k: 'a' }, build)));
  t.same(got, ['code-a', 'code-a', 'code-a'], 'all get the output');
  t.equal(builds, 1, 'built once');
  t.equal(await cachedBuild(dist, { k: 'a' }, build), 'code-a', 'then from the cache');
  t.equal(builds, 1, 'still once');
  t.notOk(existsSync(`${cacheFile(dist, { k: 'a' })}.lock`), 'no lock left');
});

t.test('another live process building the key: wait for its file, build nothing', async (t) => {
  const dist = tempDir(t);
  const file = cacheFile(dist, { k: 'b' });
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.lock`, String(process.ppid)); // a process that is running
  let built = false;
  const waiting = cachedBuild(dist, { k: 'b' }, async () => ((built = true), 'mine'));
  writeFileSync(file, 'theirs'); // the other builder finishes
  t.equal(await waiting, 'theirs', 'the other builder\'s output');
  t.notOk(built, 'no second build');
});

t.test('a lock whose process is gone is taken over', async (t) => {
  const dist = tempDir(t);
  const file = cacheFile(dist, { k: 'c' });
  mkdirSync(dirname(file), { recursive: true });
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  writeFileSync(`${file}.lock`, gone);
  t.equal(await cachedBuild(dist, { k: 'c' }, async () => 'built'), 'built', 'built here');
  t.notOk(existsSync(`${file}.lock`), 'and the lock removed');
});

t.test('the key covers every compiled tree a bundle draws on, cli/ included, and not the bundles themselves', async (t) => {
  const dist = tempDir(t);
  const put = (path: string, text: string) => (mkdirSync(dirname(`${dist}/${path}`), { recursive: true }), writeFileSync(`${dist}/${path}`, text));
  put('protocol/a.js', 'export const a = 1;');
  put('cli/board-agent.js', 'export {};');
  const before = sourceStamp(dist);
  put('cli/agent-lock.js', 'export const lock = 1;');
  const withCli = sourceStamp(dist);
  t.not(withCli, before, 'a module added under cli/ (the Node bundle starts there) changes the key');
  put('servers/private-file.js', 'export {};');
  t.not(sourceStamp(dist), withCli, 'so does one under servers/');
  const now = sourceStamp(dist);
  put('boards/.cache/0123.js', 'a cached bundle');
  put('bench/x.js', 'a bench');
  t.equal(sourceStamp(dist), now, 'cached bundles and benches do not');
});
