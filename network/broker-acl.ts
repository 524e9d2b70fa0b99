/** Broker ACL driver: the embedded broker admits VPN topics per member, and drops revoked devices' connections. */
import type { BrokerAcl } from '../broker/acl.js';
import type { DesiredState, NetworkDriver } from './driver.js';

export class BrokerAclDriver implements NetworkDriver {
  readonly name = 'broker-acl';
  constructor(
    private readonly acl: BrokerAcl,
    /** Close a client's connection if it has one (KagiBroker.disconnect). */
    private readonly disconnect: (clientId: string) => boolean = () => false,
  ) {}

  async apply(state: DesiredState): Promise<void> {
    const seen = new Set<string>();
    for (const v of state.vpns) {
      this.acl.setMembers(v.id, v.members.map((m) => ({ deviceId: m.deviceId, principal: m.via ?? m.deviceId })));
      this.acl.setCut(v.id, v.cut);
      seen.add(v.id);
    }
    for (const id of Object.keys(this.acl.snapshot())) if (!seen.has(id)) (this.acl.setMembers(id, []), this.acl.setCut(id, false));
    // A revoked device cannot connect again (the broker's lookup refuses it); one still connected goes now.
    for (const id of state.revoked ?? []) this.disconnect(id);
  }
}
