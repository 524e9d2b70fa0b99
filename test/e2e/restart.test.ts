/**
 * kill -9 of the control plane mid-join, restart on the same data dir: the
 * terminal completes its join by itself and the store holds exactly one
 * membership.
 */
import t from 'tap';
import { freePort } from '../helpers/ports.js';
import { kagiUp } from '../helpers/cli.js';
import { agent, seedDataDir, tempDir } from '../helpers/control-plane.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { topics } from '../../protocol/topics.js';

t.test('control plane killed mid-join', async (t) => {
  const data = tempDir(t);
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  const bundle = await seedDataDir(data, { deviceId: 'term-k', mac: '02:00:00:00:00:77', broker: url, password: 'alice-password' });

  let cp = await kagiUp(['--port', String(port), '--data', data]);
  t.teardown(() => cp.kill('SIGKILL'));
  // Kill the control plane the moment the join request leaves the terminal.
  let killed = false;
  const a = agent(bundle, url, {
    timeoutMs: 2000,
    attempts: 15,
    spy: (topic) => {
      if (!killed && topic === topics.service('config', 'join')) {
        killed = true;
        cp.kill('SIGKILL');
      }
    },
  });
  t.teardown(() => a.stop());
  await a.start();
  await a.configure();
  const joining = a.join('alice', 'alice-password');
  await new Promise((r) => cp.once('exit', r));
  t.ok(killed, 'control plane killed with the join in flight');
  cp = await kagiUp(['--port', String(port), '--data', data]);
  const vpns = await joining;
  t.same(vpns.map((v) => v.id), ['plant'], 'the terminal completed its join by itself');
  t.equal(a.state, 'joined', 'joined');
  cp.kill('SIGTERM');
  await new Promise((r) => cp.once('exit', r));
  const after = new SqliteStore(data);
  t.teardown(() => after.close());
  t.equal((await after.membershipsOf('term-k')).length, 1, 'exactly one membership in the store');
  t.equal((await after.members('plant')).length, 1, 'and one member of the VPN');
});
