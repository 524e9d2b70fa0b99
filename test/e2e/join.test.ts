/**
 * Embodiment 1 end to end on the embedded broker (port 0): two terminals,
 * two users, one VPN; config, join, keys, and frames both ways.
 */
import t from 'tap';
import { agent, controlPlane, device, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

t.test('two terminals join one VPN and exchange frames', async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const a = await device(cp, 'term-a');
  const b = await device(cp, 'term-b');
  const got: string[] = [];
  const ta = agent(a, cp.brokerUrl, { onData: (_v, from, p) => got.push(`a<-${from}:${dec.decode(p)}`) });
  const tb = agent(b, cp.brokerUrl, { onData: (_v, from, p) => got.push(`b<-${from}:${dec.decode(p)}`) });
  t.teardown(() => ta.stop());
  t.teardown(() => tb.stop());
  await ta.start();
  await tb.start();
  t.equal(ta.state, 'unconfigured', 'connected, not yet configured');
  const cfg = await ta.configure();
  t.equal(cfg.deviceId, 'term-a', 'S104: config names the device');
  await tb.configure();
  t.equal(ta.state, 'configured', 'configured');
  const va = await ta.join('alice', 'alice-password');
  const vb = await tb.join('bob', 'bob-password');
  t.same(va.map((v) => [v.id, v.protocol, v.port, v.epoch]), [['plant', 'tcp', 5020, 1]], 'alice joined plant (tcp/5020) at epoch 1');
  t.equal(vb[0]?.epoch, 1, 'bob holds the same epoch');
  t.equal(ta.state, 'joined', 'joined');
  t.same(cp.memory.members('plant'), ['term-a', 'term-b'], 'network devices programmed with both members');
  t.same(cp.acl.snapshot(), { plant: ['term-a', 'term-b'] }, 'broker ACL admits both');
  const members = await cp.store.members('plant');
  t.same(members.map((m) => [m.deviceId, m.userId, m.keyId]), [['term-a', 'alice', 1], ['term-b', 'bob', 1]], 'VPN table: one membership each, key id = epoch');

  await ta.send('plant', 'term-b', enc.encode('hello b'));
  await tb.send('plant', 'term-a', enc.encode('hello a'));
  await tb.send('plant', 'all', enc.encode('to all'));
  await until(() => got.length >= 3, 3000);
  t.same(got.sort(), ['a<-term-b:hello a', 'a<-term-b:to all', 'b<-term-a:hello b'], 'frames arrive intact both ways');
});
