/**
 * Explicit leave (`kagi vpn revoke`): the member is told and drops its
 * keys, the others get a new epoch at once, and frames sealed after the
 * leave cannot be opened with any key the leaver held.
 */
import t from 'tap';
import { controlPlane, crypto, joinedAgent, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { revoke } from '../../servers/admin.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { FrameReceiver } from '../../protocol/vpn-frame.js';
import { KagiError } from '../../protocol/errors.js';

const enc = new TextEncoder();

t.test('revoke: the leaver is out and the VPN is rekeyed', async (t) => {
  const data = tempDir(t);
  const cp = await controlPlane(data);
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' });
  const got: string[] = [];
  const mk = (id: string, user: string) => joinedAgent(t, cp, id, user, { onData: (_v, f, p) => got.push(`${id}<-${f}:${new TextDecoder().decode(p)}`) });
  const a = await mk('term-a', 'alice');
  const b = await mk('term-b', 'bob');
  const c = await mk('term-c', 'carol');
  const held = (await cp.store.currentSessionKey('plant'))!;
  t.equal(held.epoch, 1, 'all three hold epoch 1');

  const admin = new SqliteStore(data);
  await revoke(admin, 'plant', 'carol');
  await admin.close();
  t.ok(await until(() => !c.vpns.has('plant')), 'the leaver is told and drops its keys');
  t.ok(await until(() => a.epochs().plant === 2 && b.epochs().plant === 2), 'the remaining members switch to epoch 2 at once');
  let rows: string = '';
  const table = async () => (rows = JSON.stringify((await cp.store.members('plant')).map((m) => [m.deviceId, m.keyId])));
  for (let i = 0; i < 100 && (await table()) !== '[["term-a",2],["term-b",2]]'; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(rows, '[["term-a",2],["term-b",2]]', 'VPN table: two members at key id 2');
  t.same(cp.acl.snapshot(), { plant: ['term-a', 'term-b'] }, 'the broker no longer admits the leaver');

  await a.send('plant', 'term-b', enc.encode('after carol left'));
  t.ok(await until(() => got.includes('term-b<-term-a:after carol left')), 'the remaining members still talk');

  // Everything the leaver held: the epoch-1 group key. A frame sealed now
  // does not open with it.
  const frame = a.vpns.get('plant')!.keys.seal(enc.encode('secret after leave'));
  const leaverView = new FrameReceiver(crypto, 'plant', 60_000);
  leaverView.setKey(1, held.key, Date.now());
  t.throws(() => leaverView.open(frame, Date.now()), KagiError, 'a frame sealed after the leave cannot be opened with the old key');
});
