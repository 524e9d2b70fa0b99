/**
 * Embodiment 3 in network namespaces: the control plane (with its nftables
 * driver) runs in `fw`; an external terminal in `cli` joins from address A
 * with no config step; a TCP flow of the VPN's port passes from A and is
 * dropped from B. Started again from B: A is closed, B opened. Then the
 * control plane is killed, the tables change while it is down, and on
 * restart the firewall converges (no stale rule).
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeNetns, netnsUnavailable } from '../helpers/netns.js';
import { kagiSpawn, kagiUp, watch } from '../helpers/cli.js';
import { crypto, tempDir } from '../helpers/control-plane.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { loadServiceKeys } from '../../servers/identity.js';
import { addDevice, addUser, addVpn, deleteVpn, grant } from '../../servers/admin.js';

const why = netnsUnavailable();
if (why) console.error(`\n*** ${why} ***\n`);
const PORT = 5020;
const BROKER_PORT = 18830;

t.test('external terminal: firewall opened for its current address', { skip: why ?? false }, async (t) => {
  const ns = makeNetns();
  t.teardown(() => ns.destroy());
  const data = tempDir(t);
  const url = `mqtt://${ns.fwAddr}:${BROKER_PORT}`;
  const store = new SqliteStore(data);
  const bundle = await addDevice(store, loadServiceKeys(data, crypto), crypto, { id: 'ext-1', mac: '02:00:00:00:0e:01', kind: 'external', broker: url });
  await addVpn(store, { id: 'plant', protocol: 'tcp', port: PORT });
  await addUser(store, 'alice', 'alice-password');
  await grant(store, 'plant', 'alice');
  await store.close();
  const file = join(data, 'ext-1.json');
  writeFileSync(file, JSON.stringify(bundle), { mode: 0o600 });

  const server = ns.serve(PORT);
  t.teardown(() => server.kill());
  const upArgs = ['--host', ns.fwAddr, '--port', String(BROKER_PORT), '--data', data, '--nftables', '--nft-hook', 'input'];
  let cp = await kagiUp(upArgs, { netns: ns.fw });
  t.teardown(() => cp.kill('SIGKILL'));
  t.notOk(ns.reach(ns.a, PORT), 'before any join, the VPN port is closed to A');

  const run = async (source: string) => {
    const child = kagiSpawn(['agent', file, '--user', 'alice', '--password-stdin', '--bind', source], { netns: ns.cli });
    t.teardown(() => child.kill('SIGKILL'));
    child.stdin!.end('alice-password\n');
    const out = await watch(child).until(/joined plant/);
    return { child, out };
  };
  const first = await run(ns.a);
  t.notMatch(first.out, /state: configured/, 'S301: no config step');
  t.ok(ns.reach(ns.a, PORT), 'S302–S303: a flow of the VPN port from A passes the firewall');
  t.notOk(ns.reach(ns.b, PORT), 'from B it is dropped');

  first.child.kill('SIGTERM');
  await new Promise((r) => first.child.once('exit', r));
  await run(ns.b);
  t.ok(ns.reach(ns.b, PORT), 'S304–S306: after it comes back from B, B passes');
  t.notOk(ns.reach(ns.a, PORT), 'and A is dropped again');

  // Kill the control plane, change the tables while it is down, restart.
  cp.kill('SIGKILL');
  await new Promise((r) => cp.once('exit', r));
  const admin = new SqliteStore(data);
  await deleteVpn(admin, 'plant');
  await admin.close();
  t.notOk(ns.reach(ns.a, PORT), 'while it is down the last rules stay (closed, not open)');
  cp = await kagiUp(upArgs, { netns: ns.fw });
  t.ok(ns.reach(ns.a, PORT) && ns.reach(ns.b, PORT), 'on restart the firewall converges to the tables: no stale rule for the deleted VPN');
});

t.test('kagi up refuses to start when its firewall driver cannot run', async (t) => {
  const child = kagiSpawn(['up', '--port', '0', '--data', tempDir(t), '--nftables', '--nft-netns', 'kagi-no-such-ns']);
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  t.not(code, 0, 'exit code is not 0');
  t.match(err, /nftables: .* failed/, 'and says why');
});
