/**
 * The nftables driver in network namespaces of the test's own: a flow on
 * the VPN's port passes from a member's address and is dropped from any
 * other; moving the member from A to B closes A and opens B; a driver that
 * cannot run says so.
 */
import t from 'tap';
import { NftablesDriver, normalizeAddress } from '../../network/nftables.js';
import type { DesiredState } from '../../network/driver.js';
import { makeNetns, netnsUnavailable } from '../helpers/netns.js';

const why = netnsUnavailable();
if (why) console.error(`\n*** ${why} ***\n`);

const PORT = 5020;
const state = (addrs: string[]): DesiredState => ({
  vpns: [{ id: 'plant', protocol: 'tcp', port: PORT, priority: 0, rate: 0, cut: false, members: addrs.map((a, i) => ({ deviceId: `ext-${i}`, address: a, via: null })) }],
});

t.test('nftables firewall follows the member address', { skip: why ?? false }, async (t) => {
  const ns = makeNetns();
  t.teardown(() => ns.destroy());
  const server = ns.serve(PORT);
  t.teardown(() => server.kill());
  await new Promise((r) => setTimeout(r, 300));
  t.ok(ns.reach(ns.a, PORT) && ns.reach(ns.b, PORT), 'without the driver both addresses reach the port');

  const fw = new NftablesDriver({ netns: ns.fw, hook: 'input' });
  await fw.check();
  await fw.apply(state([ns.a]));
  t.ok(ns.reach(ns.a, PORT), 'member at A: its flow passes');
  t.notOk(ns.reach(ns.b, PORT), 'unjoined B: dropped');

  await fw.apply(state([`::ffff:${ns.b}`]));
  t.notOk(ns.reach(ns.a, PORT), 'after the move, A is dropped');
  t.ok(ns.reach(ns.b, PORT), 'and B passes (IPv4-mapped address normalised)');

  await fw.apply(state([`::ffff:${ns.b}`]));
  t.ok(ns.reach(ns.b, PORT), 'applying the same state again changes nothing (idempotent)');
  await fw.apply({ vpns: [] });
  t.ok(ns.reach(ns.a, PORT) && ns.reach(ns.b, PORT), 'VPN gone: its rules are gone too, no stale rule');
  await fw.apply(state([]));
  t.notOk(ns.reach(ns.a, PORT), 'a VPN with no members admits nobody on its port');
  await fw.remove();
});

t.test('a driver that cannot run says so', async (t) => {
  const fw = new NftablesDriver({ netns: 'kagi-no-such-namespace' });
  await t.rejects(fw.check(), /nftables: .*failed/, 'check fails with a message naming nft');
  t.equal(normalizeAddress('::ffff:10.0.0.1'), '10.0.0.1', 'IPv4-mapped addresses are normalised');
  t.match(new NftablesDriver().script(state(['10.0.0.9', '2001:db8::1'])), /elements = \{ 10\.0\.0\.9 \}[\s\S]*elements = \{ 2001:db8::1 \}[\s\S]*tcp dport 5020 drop/, 'script: one set per family, then the drop');
});
