/**
 * Embodiment 5 on the real control plane: the plan follows joins and table
 * changes, the VPN table shows it, members are told their rate or that
 * their VPN is cut, a cut VPN's frames are not forwarded by the broker even
 * if a member sends them, and the plan restores the VPN when the link
 * allows it again.
 */
import t from 'tap';
import { controlPlane, joinedAgent, logged, tempDir, until } from '../helpers/control-plane.js';
import { addUser, addVpn, grant, setVpn } from '../../servers/admin.js';
import { topics } from '../../protocol/topics.js';
import { plain, startRelay } from '../helpers/relay.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const K = 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('the plan follows the table; a cut VPN is told and its frames stop at the broker', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { lines, linkCapacity: 1000 * K });
  t.teardown(() => cp.close());
  await addVpn(cp.store, { id: 'plant', protocol: 'tcp', port: 5020, priority: 5, maxBandwidth: 600 * K });
  await addVpn(cp.store, { id: 'office', protocol: 'tcp', port: 5021, priority: 1, maxBandwidth: 600 * K });
  for (const [u, v] of [['alice', 'plant'], ['bob', 'office']] as const) {
    await addUser(cp.store, u, `${u}-password`);
    await grant(cp.store, v, u);
  }
  const row = async (id: string) => {
    const v = (await cp.store.getVpn(id))!;
    return [v.totalRate, v.flag];
  };
  await joinedAgent(t, cp, 'a1', 'alice');
  await cp.reconcile();
  t.same([await row('plant'), await row('office')], [[600 * K, 0], [0, 0]], 'office has no members: idle, plant gets its maximum');

  const rates: string[] = [];
  const got: string[] = [];
  let raw: ((topic: string, b: Uint8Array) => Promise<void>) | undefined;
  const b1 = await joinedAgent(t, cp, 'b1', 'bob', { onRate: (v, r, cut) => rates.push(`${v}:${r}:${cut}`), spy: (_t, _b, send) => (raw = send) });
  await joinedAgent(t, cp, 'b2', 'bob', { onData: (_v, f, p) => got.push(`${f}:${dec.decode(p)}`) });
  t.same(await row('office'), [400 * K, 0], 'with members, office gets what plant leaves (VPN table: total rate)');
  t.same(b1.vpns.get('office')!.keys.shaper.state, { rate: 400 * K, cut: false }, 'a joining member starts at the planned rate');

  await setVpn(cp.store, 'plant', { maxBandwidth: 1000 * K }); // kagi vpn set plant --max-bandwidth 1mbit
  t.ok(await until(() => rates.includes('office:0:true')), 'office members are told they are cut');
  t.same(await row('office'), [0, 1], 'VPN table: office cut (flag 1)');
  t.ok(logged(lines, /office cut \(bandwidth plan\)/).length === 1, 'the control plane logs the cut');
  await b1.send('office', 'b2', enc.encode('while cut'));
  t.equal(b1.unsent.get('cut'), 1, 'the agent does not send on a cut VPN');
  await raw!(topics.vpnMember('office', 'b2'), b1.vpns.get('office')!.keys.seal(enc.encode('forced while cut'), 'b2'));
  await sleep(300);
  t.same(got, [], 'a frame sent anyway is not forwarded by the broker');

  await setVpn(cp.store, 'plant', { maxBandwidth: 600 * K });
  t.ok(await until(() => rates.includes(`office:${400 * K}:false`)), 'restored: told the new rate');
  await b1.send('office', 'b2', enc.encode('restored'));
  t.ok(await until(() => got.includes('b1:restored')), 'frames flow again');
  t.same(await row('office'), [400 * K, 0], 'VPN table: office back at 400 kbit/s');
});

t.test('a relay shapes and cuts on behalf of its plaintext terminals', async (t) => {
  const cp = await controlPlane(tempDir(t), { linkCapacity: 100 * K });
  t.teardown(() => cp.close());
  await addVpn(cp.store, { id: 'plant', protocol: 'tcp', port: 5020, priority: 5, maxBandwidth: 60 * K });
  await addVpn(cp.store, { id: 'office', protocol: 'tcp', port: 5021, priority: 1, maxBandwidth: 0 });
  for (const [u, v] of [['alice', 'plant'], ['bob', 'office']] as const) {
    await addUser(cp.store, u, `${u}-password`);
    await grant(cp.store, v, u);
  }
  await joinedAgent(t, cp, 'a1', 'alice'); // plant has a member: it takes 60 kbit/s
  const got: string[] = [];
  await joinedAgent(t, cp, 'b2', 'bob', { onData: (_v, f, p) => got.push(`${f}:${dec.decode(p)}`) });
  const { relay, bound } = await startRelay(t, cp, 'relay-1');
  const plc = await plain(t, cp, 'plc-1', 'relay-1', 'p1', bound.p1!);
  await plc.p.configure();
  await plc.p.join('bob', 'bob-password');
  t.same((await cp.store.getVpn('office'))!.totalRate, 40 * K, 'office gets the 40 kbit/s plant leaves');

  // 20 frames of 1000 bytes at once: 160 kbit against 40 kbit/s with at most
  // 1 s of queueing. The relay sends some and drops the rest as over the rate.
  const pad = 'x'.repeat(1000);
  for (let i = 0; i < 20; i++) plc.p.send('office', 'b2', enc.encode(`${i} ${pad}`));
  t.ok(await until(() => (relay.status()[0]!.dropped.rate ?? 0) > 0), 'frames over the rate are dropped by the relay, counted as rate');
  await sleep(1500); // what was admitted has gone out by now
  const sent = got.length;
  t.ok(sent > 0 && sent < 20, `some frames went, the rest did not (${sent} of 20)`);
  t.equal(sent + (relay.status()[0]!.dropped.rate ?? 0), 20, 'every frame either went or was counted');
  t.same(got.map((g) => Number(g.split(' ')[0]!.split(':')[1])), [...Array(sent).keys()], 'those that went are the first ones, in order');

  await setVpn(cp.store, 'plant', { maxBandwidth: 100 * K }); // plant takes the whole link: office is cut
  t.ok(await until(async () => (await cp.store.getVpn('office'))!.flag === 1), 'office is cut');
  // Until the rate notice reaches the relay its frames still go out, and the broker drops them.
  const cutAtRelay = await until(() => (plc.p.send('office', 'b2', enc.encode('while cut')), (relay.status()[0]!.dropped.cut ?? 0) > 0));
  t.ok(cutAtRelay, 'the relay drops a cut VPN\'s data, counted as cut');
  t.notOk(got.includes('plc-1:while cut'), 'and none of it arrived');

  await setVpn(cp.store, 'plant', { maxBandwidth: 60 * K });
  t.ok(await until(async () => (await cp.store.getVpn('office'))!.flag === 0), 'office is restored');
  const flows = await until(() => (plc.p.send('office', 'b2', enc.encode('restored')), got.includes('plc-1:restored')));
  t.ok(flows, 'the plaintext terminal\'s data flows again');
});
