/**
 * Missed-poll counts survive a control-plane restart (issue 18): a member
 * frozen (SIGSTOP) while `kagi up` restarts on the same data dir and port
 * is evicted after the usual number of missed polls, counted across both
 * processes; the members that reconnect stay. Real `kagi up` and `kagi
 * agent` processes on the embedded broker.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { freePort } from '../helpers/ports.js';
import { kagiSpawn, kagiUp, stopChild, watch } from '../helpers/cli.js';
import { crypto, tempDir } from '../helpers/control-plane.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { loadServiceKeys } from '../../servers/identity.js';
import { addDevice, addUser, addVpn, grant } from '../../servers/admin.js';

const USERS = { 'term-a': 'alice', 'term-b': 'bob', 'term-s': 'sam' } as const;
const EVICT_AFTER = 4;
const UP = ['--poll-interval', '500ms', '--evict-after', String(EVICT_AFTER)];

/** Devices, VPN plant and one user per device, written with no control plane running; the device files. */
async function seed(data: string, broker: string): Promise<Record<string, string>> {
  const store = new SqliteStore(data);
  try {
    await addVpn(store, { id: 'plant', protocol: 'tcp', port: 5020 });
    const files: Record<string, string> = {};
    for (const [i, [id, user]] of Object.entries(USERS).entries()) {
      await addUser(store, user, `${user}-password`);
      await grant(store, 'plant', user);
      const mac = `02:00:00:00:10:0${i + 1}`;
      files[id] = join(data, `${id}.json`);
      writeFileSync(files[id], JSON.stringify(await addDevice(store, loadServiceKeys(data, crypto), crypto, { id, mac, kind: 'terminal', broker })));
    }
    return files;
  } finally {
    await store.close();
  }
}

t.test('a member frozen across a kagi up restart is evicted after the usual polls; the others stay', async (t) => {
  const data = tempDir(t);
  const port = await freePort();
  const files = await seed(data, `mqtt://127.0.0.1:${port}`);
  const up = ['--port', String(port), '--data', data, ...UP];
  let cp: ChildProcess = await kagiUp(up);
  const first = watch(cp);
  t.teardown(() => stopChild(cp));

  const agents: Record<string, { child: ChildProcess; out: ReturnType<typeof watch> }> = {};
  for (const [id, user] of Object.entries(USERS)) {
    const child = kagiSpawn(['agent', files[id]!, '--user', user, '--password-stdin']);
    // Never leave a stopped process behind: SIGCONT before the kill.
    t.teardown(() => void (child.kill('SIGCONT'), child.kill('SIGKILL')));
    child.stdin!.end(`${user}-password\n`);
    agents[id] = { child, out: watch(child) };
    await agents[id].out.until(/joined plant/);
  }

  agents['term-s']!.child.kill('SIGSTOP');
  await first.until(new RegExp(`term-s missed a poll \\(1/${EVICT_AFTER}\\)`), 10_000);
  t.pass('the frozen member missed its first poll before the restart');
  await stopChild(cp);
  cp = await kagiUp(up);
  const second = watch(cp);

  const log = await second.until(/term-s evicted from plant/, 30_000);
  t.match(log, new RegExp(`term-s evicted from plant \\(${EVICT_AFTER} polls missed\\)`), `evicted at ${EVICT_AFTER} missed polls, counted across the restart`);
  t.notMatch(log, new RegExp(`term-s missed a poll \\(1/${EVICT_AFTER}\\)`), 'the restarted control plane resumed the count instead of starting at zero');
  t.notMatch(log, /term-[ab] evicted/, 'the members that reconnected are not evicted');
  const store = new SqliteStore(data);
  t.teardown(() => store.close());
  t.same((await store.members('plant')).map((m) => m.deviceId), ['term-a', 'term-b'], 'VPN table: the others stay');
  for (const id of ['term-a', 'term-b']) await agents[id]!.out.until(/keys: plant epoch 2/, 15_000);
  t.pass('the others took the rekey that followed the eviction: back and communicating');

  agents['term-s']!.child.kill('SIGCONT');
  await agents['term-s']!.out.until(/left plant \(evicted\)/, 30_000);
  t.pass('thawed, the evicted member learns it was evicted');
});
