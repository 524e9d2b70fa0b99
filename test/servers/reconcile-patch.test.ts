/**
 * A join reconciles by patch (decision 108): it reads the joining device's
 * rows, not every member; VPNs it does not touch keep their objects; and
 * what it applies is what a full read of the tables gives. A member's own
 * leave patches the same way (evictions, revocations and deletions owe a
 * notice and still run a full read). Real agents on the embedded broker,
 * SQLite tables.
 */
import t from 'tap';
import { addVpn, grant } from '../../servers/admin.js';
import type { DesiredState } from '../../network/driver.js';
import { addTestUser, agent, controlPlane, device, tempDir, until } from '../helpers/control-plane.js';

/** The state as drivers see it, without object identity: members and the plan per VPN. */
const view = (s: DesiredState) => s.vpns.map((v) => ({ id: v.id, members: v.members.map((m) => ({ ...m })), rate: v.rate, cut: v.cut }));

t.test('a join patches its own rows and leaves the rest as applied', async (t) => {
  // The idle loop off (an hour), so every run here is one the test caused;
  // a link short enough that the plan changes with each join.
  const cp = await controlPlane(tempDir(t), { reconcileMs: 3_600_000, linkCapacity: 1_000_000 });
  t.teardown(() => cp.close());
  await addVpn(cp.store, { id: 'plant', protocol: 'tcp', port: 5020, priority: 2, maxBandwidth: 600_000 });
  await addVpn(cp.store, { id: 'office', protocol: 'tcp', port: 5021, priority: 1, maxBandwidth: 600_000 });
  await addVpn(cp.store, { id: 'idle', protocol: 'tcp', port: 5022 });
  await addTestUser(cp.store, 'alice', 'alice-password');
  await addTestUser(cp.store, 'bob', 'bob-password');
  await grant(cp.store, 'plant', 'alice');
  await grant(cp.store, 'office', 'bob');
  await cp.reconcile(); // the VPNs above, read in full

  // Full reads counted on the real store.
  let fullReads = 0;
  const placed = cp.store.placedMembers.bind(cp.store);
  cp.store.placedMembers = () => (fullReads++, placed());

  const before = cp.memory.state;
  const a1 = agent(await device(cp, 'a1'), cp.brokerUrl);
  const b1 = agent(await device(cp, 'b1'), cp.brokerUrl);
  t.teardown(() => Promise.all([a1.stop({ leave: false }), b1.stop({ leave: false })]));
  for (const [a, user] of [[a1, 'alice'], [b1, 'bob']] as const) {
    await a.start();
    await a.configure();
    await a.join(user, `${user}-password`);
  }
  const patched = cp.memory.state;
  t.equal(fullReads, 0, 'two joins read no member but their own');
  t.same(cp.memory.members('plant'), ['a1'], 'plant holds the joined device');
  t.same(cp.memory.members('office'), ['b1'], 'office too');
  t.equal(patched.vpns.find((v) => v.id === 'idle'), before.vpns.find((v) => v.id === 'idle'), 'a VPN no join touched is the object applied before (drivers skip it)');
  const plant = patched.vpns.find((v) => v.id === 'plant')!;
  t.ok(plant.rate > 0 && !plant.cut, `the plan follows the joins (plant may send ${plant.rate} bit/s)`);
  t.equal((await cp.store.getVpn('plant'))!.totalRate, plant.rate, 'and is written to the VPN table as a full run writes it');

  // The patch applied what a full read of the same tables gives.
  await cp.reconcile();
  t.equal(fullReads, 1, 'an asked-for reconcile reads everything');
  t.same(view(cp.memory.state), view(patched), 'a full read finds nothing the patches missed');

  // A member's own leave patches too: it owes no notice, and its own rows
  // are all it changes. b1 is told nothing, and no full read happens.
  await a1.stop();
  t.ok(await until(() => cp.memory.members('plant').length === 0, 5000), 'the leave took a1 out of plant');
  t.equal(fullReads, 1, 'by a patch: no other member read');
  const left = cp.memory.state;
  t.same(cp.memory.members('office'), ['b1'], 'office keeps b1');
  await cp.reconcile();
  t.equal(fullReads, 2, 'an asked-for reconcile reads everything');
  t.same(view(cp.memory.state), view(left), "a full read finds nothing the leave's patch missed");
});


t.test("a member's own leave, by patch, still rekeys the members left (every removal is rekeyed)", async (t) => {
  const cp = await controlPlane(tempDir(t), { reconcileMs: 3_600_000 });
  t.teardown(() => cp.close());
  await addVpn(cp.store, { id: 'plant', protocol: 'tcp', port: 5020 });
  await addTestUser(cp.store, 'alice', 'alice-password');
  await grant(cp.store, 'plant', 'alice');
  await cp.reconcile();
  const leaver = agent(await device(cp, 'r1'), cp.brokerUrl);
  const stays = agent(await device(cp, 'r2'), cp.brokerUrl);
  t.teardown(() => Promise.all([leaver.stop({ leave: false }), stays.stop({ leave: false })]));
  for (const a of [leaver, stays]) {
    await a.start();
    await a.configure();
    await a.join('alice', 'alice-password');
  }
  let fullReads = 0;
  const placed = cp.store.placedMembers.bind(cp.store);
  cp.store.placedMembers = () => (fullReads++, placed());
  const epoch = stays.epochs().plant!;
  await leaver.stop();
  t.ok(await until(() => stays.epochs().plant === epoch + 1, 5000), `the member left holds epoch ${epoch + 1}: a key the leaver never had`);
  t.same(cp.memory.members('plant'), ['r2'], 'the leaver is out of plant');
  t.equal(fullReads, 0, 'by a patch: no other member read');
});
