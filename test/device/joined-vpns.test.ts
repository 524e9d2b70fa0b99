/**
 * The kept list of a terminal's last joined VPNs (decision 137): written
 * only when it changes, read back after a restart (a new JoinedVpns on the
 * same store), and anything unreadable in its place reads as none.
 */
import t from 'tap';
import { JoinedVpns } from '../../device/joined-vpns.js';
import { MemorySecretStore } from '../../device/tickets.js';
import { encode } from '../../protocol/cbor.js';

/** A memory store that counts its writes. */
class CountingStore extends MemorySecretStore {
  sets = 0;
  override async set(key: string, value: Uint8Array) {
    this.sets++;
    return super.set(key, value);
  }
}

t.test('kept across a restart, written only when it changes', async (t) => {
  const store = new CountingStore();
  const first = new JoinedVpns(store);
  t.same(await first.recall(), [], 'nothing kept yet');
  await first.remember(['plant', 'office']);
  await first.remember(['plant', 'office']);
  t.equal(store.sets, 1, 'the same list again is not written again');
  const second = new JoinedVpns(store);
  t.same(await second.recall(), ['plant', 'office'], 'a restart reads what the last join kept');
  await second.remember(['plant']);
  t.equal(store.sets, 2, 'a changed list is written');
  await second.remember([]);
  t.same(await new JoinedVpns(store).recall(), [], 'an emptied list (a leave) reads as none');
});

t.test('anything else in its place reads as none', async (t) => {
  const bad: [string, Uint8Array][] = [
    ['not CBOR', Uint8Array.of(0xff, 0x00, 0x13)],
    ['a map, not a list', encode({ plant: 1 })],
    ['a list with a number', encode(['plant', 7])],
    ['an empty id', encode([''])],
    ['an id longer than 64', encode(['x'.repeat(65)])],
    ['more than 256 VPNs', encode(Array.from({ length: 257 }, (_, i) => `v${i}`))],
  ];
  for (const [what, bytes] of bad) {
    const store = new MemorySecretStore();
    await store.set('joined-vpns', bytes);
    t.same(await new JoinedVpns(store).recall(), [], what);
  }
});
