/**
 * The broker's view of who may use which VPN topics: the "broker ACL"
 * network-device driver writes it, the broker reads it on every publish,
 * subscribe and forward. Desired state in, replaced whole per VPN, so a
 * reconcile is idempotent.
 *
 * A member is reached through an MQTT principal: itself, or for a plaintext
 * terminal the relay it sits behind. A principal may use a VPN's topics if
 * it carries any member, and receive `{vpn}/{id}` for each member it carries.
 */
export interface AclMember {
  deviceId: string;
  /** The client id that carries it on the broker (relay), or itself. */
  principal: string;
}

export class BrokerAcl {
  private readonly vpns = new Map<string, Map<string, Set<string>>>();
  /** The same members by device id alone: a frame's topic names one, checked on every publish. */
  private readonly devices = new Map<string, Set<string>>();
  /** VPNs cut by the bandwidth plan: members stay, but the broker forwards none of their frames. */
  private readonly cut = new Set<string>();

  setCut(vpnId: string, cut: boolean): void {
    if (cut) this.cut.add(vpnId);
    else this.cut.delete(vpnId);
  }

  /** Is the VPN cut (its frames not forwarded)? */
  isCut(vpnId: string): boolean {
    return this.cut.has(vpnId);
  }

  /** Replace the active members of one VPN. */
  setMembers(vpnId: string, members: Iterable<AclMember>): void {
    const m = new Map<string, Set<string>>();
    for (const x of members) {
      const s = m.get(x.principal) ?? new Set<string>();
      s.add(x.deviceId);
      m.set(x.principal, s);
    }
    if (m.size === 0) (this.vpns.delete(vpnId), this.devices.delete(vpnId));
    else (this.vpns.set(vpnId, m), this.devices.set(vpnId, new Set([...m.values()].flatMap((s) => [...s]))));
  }

  /** Add one member (a patch: O(1), not the VPN's whole list). */
  addMember(vpnId: string, x: AclMember): void {
    let m = this.vpns.get(vpnId);
    if (!m) this.vpns.set(vpnId, (m = new Map()));
    let s = m.get(x.principal);
    if (!s) m.set(x.principal, (s = new Set()));
    s.add(x.deviceId);
    let d = this.devices.get(vpnId);
    if (!d) this.devices.set(vpnId, (d = new Set()));
    d.add(x.deviceId);
  }

  /** Remove one member as it was added (same principal). */
  removeMember(vpnId: string, x: AclMember): void {
    const m = this.vpns.get(vpnId);
    const s = m?.get(x.principal);
    if (!m || !s) return;
    s.delete(x.deviceId);
    if (s.size === 0) m.delete(x.principal);
    this.devices.get(vpnId)?.delete(x.deviceId);
    if (m.size === 0) (this.vpns.delete(vpnId), this.devices.delete(vpnId));
  }

  /** The VPNs with any member. */
  vpnIds(): string[] {
    return [...this.vpns.keys()];
  }

  /** May `principal` publish to / use the VPN at all? */
  isMember(vpnId: string, principal: string): boolean {
    return this.vpns.get(vpnId)?.has(principal) ?? false;
  }

  /** Is `deviceId` an active member of the VPN, whoever carries it? */
  hasMember(vpnId: string, deviceId: string): boolean {
    return this.devices.get(vpnId)?.has(deviceId) ?? false;
  }

  /** Does `principal` carry member `deviceId` of the VPN? */
  carries(vpnId: string, principal: string, deviceId: string): boolean {
    return this.vpns.get(vpnId)?.get(principal)?.has(deviceId) ?? false;
  }

  /** VPN → member device ids, for status and tests. */
  snapshot(): Record<string, string[]> {
    return Object.fromEntries([...this.vpns].map(([v, m]) => [v, [...m.values()].flatMap((s) => [...s]).sort()]));
  }
}
