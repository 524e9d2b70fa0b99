/**
 * Grants made after a device joined reach it without a restart. A join
 * (S105–S110) takes every VPN the user is granted at that moment; a grant
 * made later, or a VPN deleted and created again and granted anew, would
 * otherwise wait for the agent's next start. So each reconcile compares, for
 * every device that holds its own keys, the VPNs its user is granted with
 * the VPNs it is a member of; a VPN that newly shows up in that difference
 * is told to the device (`notice {op: granted, vpn, member}`), and the agent
 * joins again (the join is an upsert: it adds the new VPN and keeps the
 * rest). Plaintext terminals join through their relay when they ask, so
 * they are not told.
 *
 * Only the lease holder tells; the first look after taking the duty tells
 * every device what it is owed (grants made while no one was polling).
 */
import type { Body } from '../../protocol/body.js';
import type { DesiredState } from '../../network/driver.js';
import type { ConfigContext } from './context.js';

/** membership.ts's tell: a notice to the holder of `deviceId`'s keys. */
type Tell = (vpnId: string, deviceId: string, via: string | null, what: Body, summary: string) => Promise<unknown>;

export function grantNotices(c: ConfigContext, tell: Tell): (state: DesiredState) => Promise<void> {
  /** "device/vpn" granted to the device's user but not joined, as of the last look; null = not looked yet as lease holder. */
  let owed: Set<string> | null = null;
  return async (state) => {
    if (!c.leading()) return void (owed = null);
    const joined = new Map(state.vpns.map((v) => [v.id, new Set(v.members.map((m) => m.deviceId))]));
    const revoked = new Set(state.revoked ?? []);
    const byUser = new Map<string, string[]>();
    for (const g of await c.ctx.store.listGrants()) byUser.set(g.userId, [...(byUser.get(g.userId) ?? []), g.vpnId]);
    const now = new Set<string>();
    for (const [device, user] of await c.ctx.store.joinedAs()) {
      if (revoked.has(device)) continue;
      for (const vpn of byUser.get(user) ?? []) if (!joined.get(vpn)?.has(device)) now.add(`${device}/${vpn}`);
    }
    const before = owed;
    owed = now;
    for (const k of now) {
      if (before?.has(k)) continue;
      const [device, vpn] = k.split('/') as [string, string];
      void tell(vpn, device, null, { op: 'granted' }, 'granted');
    }
  };
}
