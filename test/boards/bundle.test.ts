/**
 * Bundles per board profile: self-contained, within budget, no eval; the
 * budget is enforced; a device file can be baked in; a Node bundle runs
 * from a directory with no node_modules and joins a VPN.
 */
import t from 'tap';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { buildBundle, evalUses, rollupCode } from '../../cli/bundle/build.js';
import { listProfiles, loadProfile } from '../../runtime/node/board-profiles.js';
import { controlPlane, crypto, kagiDataDir, tempDir, vpnWithUsers } from '../helpers/control-plane.js';
import { kagi, stopChild, watch } from '../helpers/cli.js';
import { addDevice } from '../../servers/admin.js';

t.test('every profile builds within its flash budget, with no eval', async (t) => {
  const out = tempDir(t);
  for (const name of listProfiles()) {
    const p = loadProfile(name);
    const r = await buildBundle(p, { outRoot: out });
    const code = readFileSync(r.file, 'utf8');
    t.ok(r.bytes <= p.budget.flashBytes, `${name}: ${r.bytes} B min, ${r.gzipBytes} B gzip, within ${p.budget.flashBytes}`);
    t.ok(r.gzipBytes < r.bytes, `${name}: gzip size measured`);
    t.same(evalUses(code), [], `${name}: no eval, no new Function`);
    if (p.runtime !== 'node') {
      t.notMatch(code, /\brequire\(|^import |\bimport\(/m, `${name}: self-contained (no require or import left)`);
      t.ok(code.includes(`name:"${name}"`), `${name}: its profile is baked in`);
    }
  }
});

t.test('the bundle with no device is the bytes rollup makes for no device (one uncached build per run)', async (t) => {
  // buildBundle puts null into the cached placeholder build; this is the
  // one test that runs rollup itself, so the shortcut is checked every run.
  const p = loadProfile('quickjs-terminal');
  const built = await buildBundle(p, { outRoot: tempDir(t) });
  t.equal(readFileSync(built.file, 'utf8'), await rollupCode(p, undefined), 'byte for byte');
});

t.test('the eval check finds what it must', async (t) => {
  t.equal(evalUses('a=1;eval("x")').length, 1, 'eval(');
  t.equal(evalUses('const f = new Function("a", "return a")').length, 1, 'new Function(');
  t.equal(evalUses('x = Function("return this")()').length, 1, 'Function("...")');
  t.equal(evalUses('o.evaluate(1); myeval(2); BlockedFunction(3); x.Function(4)').length, 0, 'not names that merely contain the words, nor methods');
});

t.test('over budget: the build fails naming the budget, and writes nothing', async (t) => {
  const out = tempDir(t);
  const p = { ...loadProfile('quickjs-terminal'), name: 'tiny-board', budget: { ramBytes: 65536, flashBytes: 10_000 } };
  await t.rejects(buildBundle(p, { outRoot: out }), { name: 'KagiError', message: /tiny-board: bundle is \d+ bytes, over its flash budget of 10000 \(budget\.flashBytes\)/ }, 'refused');
  t.notOk(existsSync(join(out, 'tiny-board', 'agent.js')), 'no file written');
});

t.test('kagi bundle: --list, --profile with a baked device, errors', async (t) => {
  const list = kagi(['bundle', '--list']);
  t.equal(list.code, 0, '--list');
  t.match(list.stdout, /xs-terminal\s+xs\s+terminal\s+RAM\s+64\.0 KiB/, 'lists runtime, role and budgets');
  const data = kagiDataDir(t);
  const dev = join(data, 'board.json');
  t.equal(kagi(['device', 'add', 'board-7', '--mac', '02:00:00:00:0c:07', '--out', dev, '--data', data]).code, 0, 'a device file');
  const out = tempDir(t);
  const shared = join('dist', 'boards', 'quickjs-terminal', 'agent.js');
  const sharedBefore = existsSync(shared) ? readFileSync(shared) : null;
  const r = kagi(['bundle', '--profile', 'quickjs-terminal', '--device', dev]);
  t.equal(r.code, 0, `built (${r.stderr.trim()})`);
  t.match(r.stdout, /quickjs-terminal .*KiB min, .*KiB gzip \(\d+% of 192\.0 KiB\)/, 'prints min and gzip size against the budget');
  const file = join(data, 'board.agent.js');
  t.match(r.stdout, file, 'by default beside the device file, under its name');
  t.match(readFileSync(file, 'utf8'), /"id":"board-7"/, 'the device file is baked in');
  t.equal(statSync(file).mode & 0o777, 0o600, 'a bundle holding a device key is written 0600');
  t.same(existsSync(shared) ? readFileSync(shared) : null, sharedBefore, 'the shared build folder is not touched');
  t.equal(kagi(['bundle', '--profile', 'quickjs-terminal', '--device', dev, '--out', out]).code, 0, '--out DIR');
  t.equal(statSync(join(out, 'board-7.agent.js')).mode & 0o777, 0o600, 'goes to DIR/ID.agent.js, 0600');
  t.notOk(existsSync(join(out, 'quickjs-terminal')), 'and not into a profile build folder');
  const nodeDev = kagi(['bundle', '--profile', 'node-terminal', '--device', dev, '--out', out]);
  t.equal(nodeDev.code, 2, 'node bundles take the device file on their command line');
  t.match(nodeDev.stderr, /node agent\.js DEVICE\.json/, 'and say so');
  const none = kagi(['bundle']);
  t.equal(none.code, 2, 'no profile: usage error');
  const unknown = kagi(['bundle', '--profile', 'nosuch']);
  t.equal(unknown.code, 1, 'unknown profile refused');
  t.match(unknown.stderr, /no board profile 'nosuch'.*known: .*quickjs-terminal/, 'listing the known ones');
  writeFileSync(join(data, 'bad.json'), '{}');
  t.equal(kagi(['bundle', '--profile', 'quickjs-terminal', '--device', join(data, 'bad.json'), '--out', out]).code, 2, 'a bad device file is a usage error');
});

t.test('a Node bundle runs on its own (no node_modules beside it) and joins', async (t) => {
  const built = await buildBundle(loadProfile('node-terminal'), { outRoot: tempDir(t) });
  const dir = tempDir(t); // under the OS temp dir: no node_modules on the way up
  const agentJs = join(dir, 'agent.js');
  copyFileSync(built.file, agentJs);
  const help = spawnSync(process.execPath, [agentJs, '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0, '--help exits 0');
  t.match(help.stdout, /usage: node agent\.js FILE[\s\S]*board profile node-terminal/, 'and names the baked profile');

  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const dev = join(dir, 'term.json');
  writeFileSync(dev, JSON.stringify(await addDevice(cp.store, cp.keys, crypto, { id: 'node-board', mac: '02:00:00:00:0c:08', kind: 'terminal', broker: cp.brokerUrl })), { mode: 0o600 });
  const child = spawn(process.execPath, [agentJs, dev, '--user', 'alice', '--password-stdin'], { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => stopChild(child));
  child.stdin.end('alice-password\n');
  const out = await watch(child).until(/joined plant/, 20_000);
  t.match(out, /joined plant \(tcp\/5020, epoch 1\)/, 'the bundled agent joined plant');
  t.ok((await cp.store.members('plant')).some((m) => m.deviceId === 'node-board'), 'and is in the VPN table');
});
