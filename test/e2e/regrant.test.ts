/**
 * Grants made after an agent joined reach it without a restart: a VPN
 * deleted and created again, and granted to the user again, is joined by
 * the running `kagi agent` (the config server's `notice {op: granted}`); a
 * new VPN granted to a joined user likewise. Real `kagi up`, `kagi agent`
 * and admin commands on one data dir.
 */
import t from 'tap';
import { join } from 'node:path';
import { kagi, kagiSpawn, kagiUp, stopChild, watch } from '../helpers/cli.js';
import { kagiDataDir } from '../helpers/control-plane.js';
import { SqliteStore } from '../../servers/store/sqlite.js';

t.test('a VPN deleted, made again and granted again is joined by the running agent', async (t) => {
  const data = kagiDataDir(t);
  const run = (args: string[], input?: string) => {
    const r = kagi([...args, '--data', data], input);
    if (r.code !== 0) t.fail(`kagi ${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  run(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020']);
  run(['user', 'add', 'alice', '--password-stdin'], 'alice-password\n');
  run(['user', 'add', 'bob', '--password-stdin'], 'bob-password\n');
  run(['vpn', 'grant', 'plant', 'alice']);
  run(['vpn', 'add', 'yard', '--protocol', 'tcp', '--port', '5021']);
  run(['vpn', 'grant', 'yard', 'bob']);
  const up = await kagiUp(['--port', '0', '--data', data]);
  t.teardown(() => stopChild(up));
  const agents: Record<string, ReturnType<typeof watch>> = {};
  for (const [id, user, mac] of [['term-a', 'alice', '02:00:00:00:20:01'], ['term-b', 'bob', '02:00:00:00:20:02']] as const) {
    run(['device', 'add', id, '--mac', mac, '--out', join(data, `${id}.json`), '--broker', up.brokerUrl]);
    const child = kagiSpawn(['agent', join(data, `${id}.json`), '--user', user, '--password-stdin']);
    t.teardown(() => stopChild(child));
    child.stdin!.end(`${user}-password\n`);
    agents[id] = watch(child);
  }
  await agents['term-a']!.until(/joined plant/);
  await agents['term-b']!.until(/joined yard/);

  run(['vpn', 'delete', 'plant']);
  await agents['term-a']!.until(/left plant \(deleted\)/);
  t.pass('the agent is told the VPN is gone');
  run(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020']);
  run(['vpn', 'grant', 'plant', 'alice']);
  const out = await agents['term-a']!.until(/rejoined plant/, 20_000);
  t.match(out, /left plant \(deleted\)[\s\S]*granted plant[\s\S]*rejoined plant \(epoch 1\)/, 'granted again, it joins the new VPN without a restart');

  run(['vpn', 'add', 'lab', '--protocol', 'tcp', '--port', '5022']);
  run(['vpn', 'grant', 'lab', 'alice']);
  t.match(await agents['term-a']!.until(/rejoined lab/, 20_000), /granted lab[\s\S]*rejoined lab/, 'a VPN newly granted to its user is joined too');

  const store = new SqliteStore(data);
  t.teardown(() => store.close());
  t.same((await store.membershipsOf('term-a')).map((m) => m.vpnId).sort(), ['lab', 'plant'], 'VPN table: it is a member of both');
  t.same((await store.membershipsOf('term-b')).map((m) => m.vpnId), ['yard'], 'the other user’s device is where it was');
  t.notMatch(await agents['term-b']!.until(/joined yard/), /granted/, 'and was told of no grant: none was for its user');
});
