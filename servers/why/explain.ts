/**
 * `kagi why DEVICE [VPN]` (issue 24): why is this device (not) in that VPN?
 * Walks the path a device takes into a VPN, in order, from the tables:
 *
 *   device → authentication → user                      (once per device)
 *   vpn → grant → liveness → network → relay port → bandwidth   (per VPN)
 *
 * Each step is one line with a verdict and its evidence; the first step
 * that fails is marked, with what would change it (a command, or what the
 * agent does by itself). The result is plain data (strings, numbers,
 * booleans, null) so it crosses the remote admin API as CBOR and a web
 * console can render it as the CLI does.
 *
 * Everything is read from the store, so the answer is the same on the
 * control plane's host (--data, --store) and over --remote. What the
 * network devices hold is the desired state the config server reconciles
 * them to (every 500 ms): computed here from the same tables, not read
 * back from nft or Mosquitto.
 */
import { topics } from '../../protocol/topics.js';
import { nftSetName } from '../../network/nftables.js';
import { memberRole, vpnRole } from '../../network/mosquitto-dynsec.js';
import type { DeviceHistory, DeviceRow, MemberRow, Store, VpnRow } from '../store/store.js';
import { refusalHint, type HintContext } from './refusal-hints.js';

export type WhyVerdict = 'ok' | 'fail' | 'warn' | 'info';
export type WhyStepName = 'device' | 'authentication' | 'user' | 'vpn' | 'grant' | 'liveness' | 'network' | 'relay-port' | 'bandwidth';

export interface WhyStep {
  step: WhyStepName;
  verdict: WhyVerdict;
  /** What the tables say, in words. */
  evidence: string;
  /** What would change the verdict (a command, or what happens by itself); null when nothing needs changing. */
  hint: string | null;
  /** The first failing step of its path (device steps, then each VPN's). */
  marked: boolean;
}

export interface WhyResult {
  device: string;
  /** When the tables were read (ISO). */
  at: string;
  /** The device's own steps: device, authentication, user. */
  steps: WhyStep[];
  /** Per VPN asked about (or granted to its user, or holding it): vpn, grant, liveness, network, relay port, bandwidth. */
  vpns: { vpn: string; steps: WhyStep[] }[];
  /** The first marked step of all: what to fix first. */
  marked: { vpn: string | null; step: WhyStepName; evidence: string; hint: string | null } | null;
}

/** What the control plane runs with, where known (over --remote the config server says; on a data dir, defaults). */
export interface WhySettings {
  /** Polls missed before eviction (kagi up --evict-after; 3 when not known). */
  evictAfter?: number;
  /** ms between polls (kagi up --poll-interval). */
  pollIntervalMs?: number;
  /** Names of the network drivers the config server runs; undefined = not known here. */
  drivers?: string[];
}

/** Everything read once from the store for one device. */
interface Facts {
  id: string;
  device: DeviceRow | undefined;
  history: DeviceHistory;
  user: string | null;
  /** How the user was found: joined (the device's last join, or a membership), tried (a refused join). */
  userFrom: 'joined' | 'tried' | null;
  userExists: boolean;
  grants: string[];
  memberships: MemberRow[];
  missed: number;
  communicating: boolean;
  presence: { online: boolean; changedAt: number } | undefined;
  address: string | null;
  vpns: VpnRow[];
  /** The VPNs explained: the one asked, or every VPN its user is granted or it holds. */
  which: string[];
  /** Each explained VPN's current session key: its epoch, and when it was made (the last rekey). */
  keys: Map<string, { epoch: number; createdAt: number }>;
  relay: DeviceRow | undefined;
  relayPresence: { online: boolean; changedAt: number } | undefined;
  /** The VPN asked about, if one (hints name it). */
  asked: string | null;
  settings: Required<Pick<WhySettings, 'evictAfter'>> & WhySettings;
  now: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

function step(name: WhyStepName, verdict: WhyVerdict, evidence: string, hint: string | null = null): WhyStep {
  return { step: name, verdict, evidence, hint, marked: false };
}

/** Explain one device's path into one VPN, or into every VPN its user is granted or it holds. */
export async function explainDevice(store: Store, deviceId: string, vpnId?: string, settings: WhySettings = {}, now = Date.now()): Promise<WhyResult> {
  const f = await readFacts(store, deviceId, vpnId ?? null, { evictAfter: 3, ...settings }, now);
  const steps = [deviceStep(f), authStep(f), userStep(f)];
  const vpns = f.which.map((v) => ({ vpn: v, steps: vpnPath(f, v) }));
  const own = markFirst(steps);
  for (const p of vpns) if (!own) markFirst(p.steps);
  const first = own ? { vpn: null, s: own } : vpns.map((p) => ({ vpn: p.vpn, s: p.steps.find((x) => x.marked) })).find((x) => x.s);
  return {
    device: deviceId,
    at: iso(now),
    steps,
    vpns,
    marked: first?.s ? { vpn: first.vpn, step: first.s.step, evidence: first.s.evidence, hint: first.s.hint } : null,
  };
}

/** Mark the first failing step; the marked step, if any. */
function markFirst(steps: WhyStep[]): WhyStep | undefined {
  const s = steps.find((x) => x.verdict === 'fail');
  if (s) s.marked = true;
  return s;
}

async function readFacts(store: Store, id: string, asked: string | null, settings: Facts['settings'], now: number): Promise<Facts> {
  const device = await store.getDevice(id);
  const presence = await store.presence();
  const history = await store.deviceHistory(id);
  const memberships = device ? await store.membershipsOf(id) : [];
  // joined_as is kept for devices that hold their own keys; a plaintext
  // terminal's user is in its memberships, or in its last accepted join.
  const joined = (await store.joinedAs()).get(id) ?? memberships[0]?.userId ?? (history.auth?.op === 'join' ? history.auth.user : null);
  // A refusal newer than the last join says who it tried to be.
  const tried = history.refusal?.user && (!history.auth || history.refusal.at >= history.auth.at) ? history.refusal.user : null;
  const user = joined ?? tried;
  const userFrom = joined ? 'joined' : tried ? 'tried' : null;
  const grants = user !== null ? await store.grantsOf(user) : [];
  const which = asked !== null ? [asked] : [...new Set([...grants, ...memberships.map((m) => m.vpnId)])].sort();
  const keys = new Map<string, { epoch: number; createdAt: number }>();
  for (const v of which) {
    const k = await store.currentSessionKey(v);
    if (k) keys.set(v, { epoch: k.epoch, createdAt: k.createdAt });
  }
  return {
    id, device, history, user, userFrom, memberships, settings, now, asked, grants, which, keys,
    userExists: user !== null && (await store.getUser(user)) !== undefined,
    missed: (await store.missedPolls()).get(id) ?? 0,
    communicating: !(await store.notCommunicating()).has(id),
    presence: presence.get(id),
    relayPresence: device?.relayId ? presence.get(device.relayId) : undefined,
    address: (await store.getNetworkInfo(id))?.address ?? null,
    vpns: await store.listVpns(),
    relay: device?.relayId ? await store.getDevice(device.relayId) : undefined,
  };
}

function hintContext(f: Facts, vpn: string | null): HintContext {
  const relay = f.device?.relayId && f.device.relayPort ? { id: f.device.relayId, port: f.device.relayPort } : null;
  return { device: f.id, user: f.user, vpn, relay };
}

/** How to (re)start whatever joins for the device. */
function startAgent(f: Facts): string {
  if (f.device?.kind === 'plaintext') return `start the plaintext terminal on ${f.device.relayId}/${f.device.relayPort} (kagi agent ${f.id}.json --via RELAY_HOST:PORT --user ${f.user ?? 'USER'} --password-stdin) with its relay running`;
  return `start the agent: kagi agent ${f.id}.json --user ${f.user ?? 'USER'} --password-stdin`;
}

function deviceStep(f: Facts): WhyStep {
  const d = f.device;
  if (!d) return step('device', 'fail', `no device '${f.id}' is registered`, `register it: kagi device add ${f.id} --mac MAC --out ${f.id}.json`);
  if (d.kind === 'admin') return step('device', 'fail', `${f.id} is an admin identity, not a device: it never joins a VPN`, 'admins run admin commands with --remote; add a device with kagi device add');
  if (d.kind === 'service') return step('device', 'fail', `${f.id} is a service identity, not a device`, null);
  const where = d.kind === 'plaintext' ? `, bound to relay ${d.relayId} port ${d.relayPort}` : '';
  if (d.revoked) return step('device', 'fail', `${f.id} (${d.kind}, MAC ${d.mac}) is revoked`, `revoked for good: register the device again under a new id (kagi device add NEW --mac ${d.mac} --allow-duplicate-mac)`);
  return step('device', 'ok', `${f.id} is registered: ${d.kind}, MAC ${d.mac}${where}`);
}

function authStep(f: Facts): WhyStep {
  const { auth, refusal } = f.history;
  const last = auth ? `last authenticated ${iso(auth.at)} (${auth.op})` : 'never authenticated';
  if (refusal && (!auth || refusal.at >= auth.at)) {
    return step('authentication', 'fail', `${last}; refused ${iso(refusal.at)}: ${refusal.code} (${refusal.reason})`, refusalHint(refusal.code, { ...hintContext(f, f.asked), user: refusal.user ?? f.user }));
  }
  const older = refusal ? `; last refused ${iso(refusal.at)}: ${refusal.code} (${refusal.reason})` : '';
  if (!auth) {
    if (f.device?.kind === 'relay') return step('authentication', 'info', `${last}: a relay authenticates when it starts`, `start the relay: kagi agent ${f.id}.json --profile PROFILE`);
    return step('authentication', 'fail', `${last}: no config or join request of it reached the auth server`, `${startAgent(f)}, and check it reaches the control plane's broker (kagi status shows it online)`);
  }
  return step('authentication', 'ok', `${last}${older}`);
}

function userStep(f: Facts): WhyStep {
  if (f.device?.kind === 'relay' && !f.user) return step('user', 'info', 'a relay joins for the plaintext terminals on its ports, as their users');
  if (!f.user) return step('user', 'fail', 'has not joined as any user', startAgent(f));
  const grants = f.grants.length ? `granted ${f.grants.join(', ')}` : 'granted no VPN';
  if (!f.userExists) return step('user', 'fail', `tried to join as ${f.user}, which is no user`, `add the user: kagi user add ${f.user} --password-stdin (or start the agent with the right --user)`);
  const how = f.userFrom === 'tried' ? `tried to join as ${f.user} (refused)` : `joined as ${f.user}`;
  if (f.grants.length === 0) return step('user', 'fail', `${how}; ${f.user} is ${grants}`, `kagi vpn grant VPN ${f.user}`);
  return step('user', f.userFrom === 'tried' ? 'warn' : 'ok', `${how}; ${f.user} is ${grants}`);
}

function vpnPath(f: Facts, vpnId: string): WhyStep[] {
  const vpn = f.vpns.find((v) => v.id === vpnId);
  const member = f.memberships.find((m) => m.vpnId === vpnId);
  const steps = [vpnStep(vpn, vpnId, f.keys.get(vpnId)), grantStep(f, vpnId), livenessStep(f, vpnId, member), networkStep(f, vpn, member)];
  if (f.device?.kind === 'plaintext') steps.push(relayPortStep(f));
  steps.push(bandwidthStep(f, vpn));
  return steps;
}

function vpnStep(vpn: VpnRow | undefined, vpnId: string, key: { epoch: number; createdAt: number } | undefined): WhyStep {
  if (!vpn) return step('vpn', 'fail', `no VPN '${vpnId}'`, `kagi vpn add ${vpnId} --protocol tcp --port PORT`);
  const epoch = key ? `, key epoch ${key.epoch} since ${iso(key.createdAt)}` : ', no session key yet (made at its first join)';
  return step('vpn', 'ok', `${vpn.id}: ${vpn.protocol}/${vpn.port}, priority ${vpn.priority}${epoch}${vpn.rekeyRequestedAt ? `, a rekey owed since ${iso(vpn.rekeyRequestedAt)}` : ''}`);
}

function grantStep(f: Facts, vpnId: string): WhyStep {
  if (!f.user) return step('grant', 'info', 'no user to check: the device has not joined as anyone');
  if (f.grants.includes(vpnId)) return step('grant', 'ok', `${f.user} is granted ${vpnId}`);
  return step('grant', 'fail', `${f.user} is not granted ${vpnId}`, `kagi vpn grant ${vpnId} ${f.user}`);
}

function presenceText(f: Facts): string {
  if (!f.presence) return f.device?.kind === 'plaintext' ? `its relay ${f.device.relayId} holds its keys` : 'never seen on the broker';
  return `${f.presence.online ? 'online' : 'offline'} since ${iso(f.presence.changedAt)}`;
}

function livenessStep(f: Facts, vpnId: string, member: MemberRow | undefined): WhyStep {
  const { evictAfter, pollIntervalMs } = f.settings;
  const every = pollIntervalMs ? ` (a poll every ${pollIntervalMs / 1000} s)` : '';
  if (member) {
    const holder = f.device?.kind === 'plaintext' ? `its relay ${f.device.relayId}` : 'the agent';
    if (f.missed > 0 || !f.communicating) {
      return step('liveness', 'fail', `MISSING: member of ${vpnId} (key epoch ${member.keyId}) that missed ${f.missed} of ${evictAfter} polls${every}; not communicating, so left out of rekeys; ${presenceText(f)}`,
        `${holder} has not answered polls: check it runs and reaches the broker; it is evicted after ${Math.max(0, evictAfter - f.missed)} more missed poll(s), and one answer makes it ACTIVE again`);
    }
    if (member.keyId === 0) return step('liveness', 'warn', `member of ${vpnId}, but no key acknowledged yet (joining); ${presenceText(f)}`, 'the key server delivers the key; if it stays so, see the key server\'s log');
    return step('liveness', 'ok', `ACTIVE: member of ${vpnId} holding key epoch ${member.keyId}, network ${member.networkId}; ${presenceText(f)}`);
  }
  const ev = f.history.eviction;
  if (ev && ev.from.includes(vpnId)) {
    return step('liveness', 'fail', `EVICTED from ${vpnId} ${iso(ev.at)} (${ev.why}); ${presenceText(f)}`,
      `an evicted agent joins again by itself once it runs and reaches the broker; if it does not, ${startAgent(f)}`);
  }
  return step('liveness', 'fail', `not a member of ${vpnId}: it has not joined it since it was granted, or it left (its agent stopped)`, startAgent(f));
}

function networkStep(f: Facts, vpn: VpnRow | undefined, member: MemberRow | undefined): WhyStep {
  if (!vpn || !member) return step('network', 'info', 'the network devices hold nothing for it: not a member');
  const principal = f.device?.kind === 'plaintext' && f.device.relayId ? f.device.relayId : f.id;
  const runs = (name: string) => f.settings.drivers === undefined || f.settings.drivers.includes(name);
  const known = f.settings.drivers !== undefined;
  const parts: string[] = [];
  if (runs('broker-acl')) parts.push(`broker ACL${known ? '' : ' (embedded broker)'}: ${principal} may publish ${topics.vpnMember(vpn.id, f.id)} and ${topics.vpnAll(vpn.id)}, and subscribe to them`);
  const addr = f.device?.kind === 'plaintext' ? null : f.address;
  if (runs('nftables')) parts.push(`nftables${known ? '' : ' (with kagi up --nftables)'}: ${addr ? `set ${nftSetName(vpn.id, addr.includes(':') ? 'v6' : 'v4')} holds ${addr}` : 'no address of its own in the sets'}`);
  if (runs('mosquitto-dynsec')) parts.push(`dynsec${known ? '' : ' (with kagi up --dynsec)'}: client ${principal} holds roles ${vpnRole(vpn.id)} and ${memberRole(vpn.id, f.id)}`);
  if (!addr && f.device?.kind !== 'plaintext' && runs('nftables')) {
    return step('network', 'warn', `${parts.join('; ')}`, 'no address is recorded for it: the firewall opens nothing until the broker or its join reports one (it joins again when it reconnects)');
  }
  return step('network', 'ok', parts.join('; '));
}

function relayPortStep(f: Facts): WhyStep {
  const d = f.device!;
  const port = `relay port ${d.relayId}/${d.relayPort}`;
  const forwarding = f.memberships.some((m) => m.keyId > 0);
  if (!f.relay) return step('relay-port', 'fail', `${port}: no relay '${d.relayId}' is registered`, `register the relay: kagi device add ${d.relayId} --mac MAC --kind relay`);
  if (f.relay.revoked) return step('relay-port', 'fail', `${port} is RESTRICTED because the relay ${d.relayId} is revoked`, `bind the terminal to another relay's port (kagi device add ${f.id} --kind plaintext --relay RELAY --port PORT under a new id)`);
  if (forwarding && f.relayPresence && !f.relayPresence.online) {
    return step('relay-port', 'fail', `${port} is FORWARDING in the tables, but the relay ${d.relayId} is offline since ${iso(f.relayPresence.changedAt)}: nothing passes`,
      `start the relay: kagi agent ${d.relayId}.json --profile PROFILE (its ports come back RESTRICTED, and the terminal joins again through ${d.relayPort})`);
  }
  if (forwarding) return step('relay-port', 'ok', `${port} is FORWARDING: ${f.id} holds keys for ${f.memberships.filter((m) => m.keyId > 0).map((m) => m.vpnId).join(', ')}`);
  const because = f.memberships.length ? 'its VPN keys are not delivered yet' : `${f.id} is a member of no VPN (never joined, evicted, or its VPN deleted or revoked)`;
  return step('relay-port', 'fail', `${port} is RESTRICTED because ${because}: only config and join pass`, `the terminal joins through the port: ${startAgent(f)}`);
}

function bits(n: number): string {
  return n >= 1e6 ? `${+(n / 1e6).toFixed(2)} mbit/s` : n >= 1e3 ? `${+(n / 1e3).toFixed(2)} kbit/s` : `${n} bit/s`;
}

function bandwidthStep(f: Facts, vpn: VpnRow | undefined): WhyStep {
  if (!vpn) return step('bandwidth', 'info', 'no VPN, no plan');
  if (vpn.flag === 1) {
    // Cut: every level above it is served first (bandwidth-plan.ts rule 2).
    const above = f.vpns.filter((v) => v.priority > vpn.priority && v.flag === 0).sort((a, b) => b.priority - a.priority);
    const by = above.length ? `the link goes to higher priorities first: ${above.map((v) => `${v.id} (priority ${v.priority}, ${v.totalRate ? bits(v.totalRate) : 'unlimited'})`).join(', ')}` : 'the link is too short for its level';
    const lowest = above.length ? Math.min(...above.map((v) => v.priority)) : vpn.priority;
    return step('bandwidth', 'fail', `${vpn.id} is CUT by the bandwidth plan at priority ${vpn.priority}: ${by}`,
      `raise its priority (kagi vpn set ${vpn.id} --priority ${lowest + 1}), lower the maximum of a VPN above it (kagi vpn set VPN --max-bandwidth RATE), or give the link more (kagi up --link-capacity)`);
  }
  if (vpn.totalRate > 0) return step('bandwidth', 'ok', `${vpn.id} may send ${bits(vpn.totalRate)} (planned; priority ${vpn.priority}${vpn.maxBandwidth ? `, max ${bits(vpn.maxBandwidth)}` : ''})`);
  return step('bandwidth', 'ok', `${vpn.id} is not limited by the plan (no link capacity given, or no maximum)`);
}
