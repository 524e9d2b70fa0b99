/**
 * The broker's view of who may use which VPN topics: the "broker ACL"
 * network-device driver writes it, the broker reads it on every publish,
 * subscribe and forward. Desired state in, replaced whole per VPN, so a
 * reconcile is idempotent.
 */
export class BrokerAcl {
  private readonly vpns = new Map<string, Set<string>>();

  /** Replace the active members of one VPN. */
  setMembers(vpnId: string, deviceIds: Iterable<string>): void {
    const s = new Set(deviceIds);
    if (s.size === 0) this.vpns.delete(vpnId);
    else this.vpns.set(vpnId, s);
  }

  isMember(vpnId: string, deviceId: string): boolean {
    return this.vpns.get(vpnId)?.has(deviceId) ?? false;
  }

  snapshot(): Record<string, string[]> {
    return Object.fromEntries([...this.vpns].map(([v, s]) => [v, [...s].sort()]));
  }
}
