/** Broker ACL driver: the embedded broker admits VPN topics per member, and drops revoked devices' connections. */
import type { BrokerAcl } from '../broker/acl.js';
import type { DesiredState, NetworkDriver, VpnState } from './driver.js';

export class BrokerAclDriver implements NetworkDriver {
  readonly name = 'broker-acl';
  constructor(
    private readonly acl: BrokerAcl,
    /** Close a client's connection if it has one (KagiBroker.disconnect). */
    private readonly disconnect: (clientId: string) => boolean = () => false,
  ) {}

  /** Each VPN as last applied: the config server's patches keep untouched VPNs' objects, which need no work. */
  private readonly applied = new Map<string, VpnState>();

  async apply(state: DesiredState): Promise<void> {
    const seen = new Set<string>();
    for (const v of state.vpns) {
      seen.add(v.id);
      const before = this.applied.get(v.id);
      if (before === v) continue;
      this.applied.set(v.id, v);
      if (!before || !diffSorted(before.members, v.members, (m) => this.acl.removeMember(v.id, aclMember(m)), (m) => this.acl.addMember(v.id, aclMember(m)))) {
        this.acl.setMembers(v.id, v.members.map(aclMember));
      }
      this.acl.setCut(v.id, v.cut);
    }
    for (const id of this.applied.keys()) if (!seen.has(id)) this.applied.delete(id);
    for (const id of this.acl.vpnIds()) if (!seen.has(id)) (this.acl.setMembers(id, []), this.acl.setCut(id, false));
    // A revoked device cannot connect again (the broker's lookup refuses it); one still connected goes now.
    for (const id of state.revoked ?? []) this.disconnect(id);
  }
}

type Member = VpnState['members'][number];

const aclMember = (m: Member) => ({ deviceId: m.deviceId, principal: m.via ?? m.deviceId });

/**
 * The members a VPN lost and gained, by one walk of both lists sorted by
 * device id: a join's patch changes one member of thousands, and rebuilding
 * the VPN's sets for it made every join cost O(members) in Map and Set
 * work (3% of a re-join at 1,000 members, growing with the fleet). A member
 * whose principal changed is removed and added. False when either list is
 * not sorted as JavaScript sorts strings (a store's collation may order
 * differently): the caller then replaces the VPN whole.
 */
function diffSorted(a: Member[], b: Member[], removed: (m: Member) => void, added: (m: Member) => void): boolean {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // Sortedness is checked as the walk goes (one pass): the caller's
    // whole replacement then makes whatever was done here moot.
    if ((i > 0 && i < a.length && !(a[i - 1]!.deviceId < a[i]!.deviceId)) || (j > 0 && j < b.length && !(b[j - 1]!.deviceId < b[j]!.deviceId))) return false;
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x.deviceId < y.deviceId)) (removed(x!), i++);
    else if (x === undefined || y.deviceId < x.deviceId) (added(y), j++);
    else {
      if (x !== y && (x.via ?? x.deviceId) !== (y.via ?? y.deviceId)) (removed(x), added(y));
      i++;
      j++;
    }
  }
  return true;
}
