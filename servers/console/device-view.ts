/**
 * What the console's device page shows, behind one function: the device
 * row, its memberships, its liveness and its relay port, read from the
 * tables (so any instance's console shows the same), with the `kagi why`
 * steps (explainDevice): the device's own, then each VPN's, the first
 * failing one marked with what would change it.
 */
import type { Store } from '../store/store.js';
import { explainDevice, type WhySettings, type WhyStep } from '../why/explain.js';

export interface DeviceView {
  id: string;
  kind: string;
  mac: string;
  revoked: boolean;
  address: string | null;
  /** The user it last joined as, if the config server recorded one. */
  joinedAs: string | null;
  memberships: { vpn: string; user: string; epoch: number; networkId: string; current: number | null }[];
  liveness: {
    /** null: never seen on a broker (plaintext terminals speak through their relay). */
    online: boolean | null;
    since: string | null;
    communicating: boolean;
    missedPolls: number;
  };
  /** A plaintext terminal's relay port, or the ports a relay serves. */
  relayPorts: { relay: string | null; port: string | null; terminal: string; state: 'FORWARDING' | 'RESTRICTED' }[];
  /** `kagi why` for the device: its steps, then each VPN's (step named "VPN step"). */
  why: WhyStep[];
}

/** The device page's data, or null for an unknown id (or an admin's: not a device). */
export async function deviceView(store: Store, id: string, settings: WhySettings = {}): Promise<DeviceView | null> {
  const d = await store.getDevice(id);
  if (!d || d.kind === 'admin') return null;
  const memberships = await store.membershipsOf(id);
  const current = new Map<string, number | null>();
  for (const m of memberships) current.set(m.vpnId, (await store.currentSessionKey(m.vpnId))?.epoch ?? null);
  const presence = (await store.presence()).get(id);
  const info = await store.getNetworkInfo(id);
  return {
    id: d.id, kind: d.kind, mac: d.mac, revoked: d.revoked, address: info?.address ?? null,
    joinedAs: (await store.joinedAs()).get(id) ?? null,
    memberships: memberships.map((m) => ({ vpn: m.vpnId, user: m.userId, epoch: m.keyId, networkId: m.networkId, current: current.get(m.vpnId) ?? null })),
    liveness: {
      online: presence ? presence.online : null,
      since: presence ? new Date(presence.changedAt).toISOString() : null,
      communicating: !(await store.notCommunicating()).has(id),
      missedPolls: (await store.missedPolls()).get(id) ?? 0,
    },
    relayPorts: await relayPorts(store, d),
    why: await whySteps(store, id, settings),
  };
}

async function whySteps(store: Store, id: string, settings: WhySettings): Promise<WhyStep[]> {
  const r = await explainDevice(store, id, undefined, settings);
  return [...r.steps, ...r.vpns.flatMap((v) => v.steps.map((s) => ({ ...s, step: `${v.vpn} ${s.step}` as WhyStep['step'] })))];
}

/** A port forwards while its terminal holds a membership with a key (as kagi status says). */
async function relayPorts(store: Store, d: { id: string; kind: string; relayId: string | null; relayPort: string | null }): Promise<DeviceView['relayPorts']> {
  const terminals = d.kind === 'plaintext' ? [d] : d.kind === 'relay' ? (await store.listDevices()).filter((x) => x.kind === 'plaintext' && x.relayId === d.id) : [];
  const out: DeviceView['relayPorts'] = [];
  for (const t of terminals) {
    const forwarding = (await store.membershipsOf(t.id)).some((m) => m.keyId > 0);
    out.push({ relay: t.relayId, port: t.relayPort, terminal: t.id, state: forwarding ? 'FORWARDING' : 'RESTRICTED' });
  }
  return out;
}
