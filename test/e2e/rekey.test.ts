/**
 * Explicit leave (`kagi vpn revoke`): the member is told and drops its
 * keys, the others get a new epoch at once, and frames sealed after the
 * leave cannot be opened with any key the leaver held.
 */
import t from 'tap';
import { controlPlane, crypto, joinedAgent, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { revoke, revokeDevice } from '../../servers/admin.js';
import { startControlPlane } from '../../servers/control-plane.js';
import { freePort } from '../helpers/ports.js';
import { haveMosquittoBinary, startMosquitto } from '../helpers/mosquitto.js';
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
  const frame = a.vpns.get('plant')!.keys.seal(enc.encode('secret after leave'), 'all');
  const leaverView = new FrameReceiver(crypto, 'plant', 60_000);
  leaverView.setKey(1, held.key, Date.now());
  t.throws(() => leaverView.open(frame, Date.now(), 'all'), KagiError, 'a frame sealed after the leave cannot be opened with the old key');
});

/** A private Mosquitto, so members keep their broker while control planes come and go. */
async function privateBroker(t: { teardown(fn: () => unknown): void }): Promise<string | undefined> {
  const port = await freePort();
  const mq = await startMosquitto(port);
  if (!mq) return undefined;
  t.teardown(() => mq.kill('SIGKILL'));
  return `mqtt://127.0.0.1:${port}`;
}

const NO_MOSQUITTO = 'SKIPPED: needs the mosquitto binary (apt-get install -y mosquitto)';
if (!haveMosquittoBinary) console.error(`\n*** ${NO_MOSQUITTO} ***\n`);

t.test('a device revoked while the control plane is down: its VPN is rekeyed once, at the next start', { skip: haveMosquittoBinary ? false : NO_MOSQUITTO }, async (t) => {
  const url = (await privateBroker(t))!;
  const data = tempDir(t);
  const cp = await controlPlane(data, { brokerUrl: url });
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' });
  const got: string[] = [];
  const mk = (id: string, user: string) => joinedAgent(t, cp, id, user, { brokerAuth: 'none', onData: (_v, f, p) => got.push(`${id}<-${f}:${new TextDecoder().decode(p)}`) });
  const a = await mk('term-a', 'alice');
  const b = await mk('term-b', 'bob');
  await mk('term-c', 'carol');
  const held = (await cp.store.currentSessionKey('plant'))!;
  t.equal(held.epoch, 1, 'all three hold epoch 1');
  await cp.close();

  const admin = new SqliteStore(data);
  await revokeDevice(admin, 'term-c'); // kagi device revoke --data DIR, nothing running
  t.ok((await admin.getVpn('plant'))!.rekeyRequestedAt > 0, 'the removal and the owed rekey are one write');
  await admin.close();

  const again = await controlPlane(data, { brokerUrl: url });
  t.teardown(() => again.close());
  t.ok(await until(async () => (await again.store.currentSessionKey('plant'))?.epoch === 2, 20_000), 'the next start rekeys the VPN');
  t.ok(await until(() => a.epochs().plant === 2 && b.epochs().plant === 2, 20_000), 'the remaining members hold epoch 2');
  await a.send('plant', 'term-b', enc.encode('after the restart'));
  t.ok(await until(() => got.includes('term-b<-term-a:after the restart'), 10_000), 'and talk under it');
  t.equal((await again.store.getVpn('plant'))!.rekeyRequestedAt, 0, 'the owed rekey is paid');
  t.equal((await again.store.currentSessionKey('plant'))!.epoch, 2, 'once: no second rekey for the same removal');

  const frame = a.vpns.get('plant')!.keys.seal(enc.encode('secret after the revoke'), 'all');
  const revokedView = new FrameReceiver(crypto, 'plant', 60_000);
  revokedView.setKey(1, held.key, Date.now());
  t.throws(() => revokedView.open(frame, Date.now(), 'all'), KagiError, 'a frame sealed after the restart does not open with any key the revoked device held');
});

t.test('a user revoked while the control plane is down: its device is told at the next start, and the VPN rekeyed', { skip: haveMosquittoBinary ? false : NO_MOSQUITTO }, async (t) => {
  const url = (await privateBroker(t))!;
  const data = tempDir(t);
  const cp = await controlPlane(data, { brokerUrl: url });
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', carol: 'carol-password' });
  const heard: string[] = [];
  const a = await joinedAgent(t, cp, 'term-a', 'alice', { brokerAuth: 'none' });
  const c = await joinedAgent(t, cp, 'term-c', 'carol', { brokerAuth: 'none', onLeft: (vpn, reason) => heard.push(`${vpn}: ${reason}`) });
  await cp.close();

  const admin = new SqliteStore(data);
  await revoke(admin, 'plant', 'carol'); // kagi vpn revoke plant carol --data DIR, nothing running
  t.match(await admin.owedNotices(), [{ vpnId: 'plant', memberId: 'term-c', holderId: 'term-c', reason: 'revoked' }], 'the removal and the notice owed to its holder are one write');
  await admin.close();

  const again = await controlPlane(data, { brokerUrl: url });
  t.teardown(() => again.close());
  t.ok(await until(() => heard.includes('plant: revoked'), 20_000), 'the next start tells the device it is out (S405)');
  t.notOk(c.vpns.has('plant'), 'and it dropped its keys');
  t.ok(await until(async () => (await again.store.owedNotices()).length === 0, 10_000), 'the notice is no longer owed once delivered');
  t.ok(await until(() => a.epochs().plant === 2, 20_000), 'the rest are rekeyed');
});

t.test('a rekey that fails is retried until it is done', { skip: haveMosquittoBinary ? false : NO_MOSQUITTO }, async (t) => {
  const url = (await privateBroker(t))!;
  const data = tempDir(t);
  const cp = await controlPlane(data, { brokerUrl: url });
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const a = await joinedAgent(t, cp, 'term-a', 'alice', { brokerAuth: 'none' });
  await joinedAgent(t, cp, 'term-b', 'bob', { brokerAuth: 'none' });
  await cp.close();
  // Auth and config come back; the key server does not (its process died).
  const lines: string[] = [];
  const noKeys = await startControlPlane({ dataDir: data, crypto, brokerUrl: url, services: ['auth', 'config'], timeoutMs: 1000, log: (l, m) => lines.push(`${l}: ${m}`) });
  t.teardown(() => noKeys.close());
  await revoke(noKeys.store, 'plant', 'bob');
  t.ok(await until(() => lines.some((l) => /rekey of plant failed/.test(l)), 20_000), 'the config server\'s rekey request fails');
  t.ok((await noKeys.store.getVpn('plant'))!.rekeyRequestedAt > 0, 'and the VPN still owes it');
  const keys = await startControlPlane({ dataDir: data, crypto, brokerUrl: url, services: ['keys'], timeoutMs: 5000 });
  t.teardown(() => keys.close());
  t.ok(await until(async () => (await noKeys.store.currentSessionKey('plant'))?.epoch === 2, 20_000), 'a key server that comes back pays it');
  t.ok(await until(() => a.epochs().plant === 2, 20_000), 'and the remaining member holds the new epoch');
  t.equal((await noKeys.store.getVpn('plant'))!.rekeyRequestedAt, 0, 'nothing owed any more');
});
