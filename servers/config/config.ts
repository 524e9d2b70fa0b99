/**
 * Config server (patent 1): the front door. Device config (1a) and VPN
 * membership (1b) in the patent's order:
 *   config.request → auth verifies (2a) → config sent (S104)
 *   join.request → auth checks the user (2b) → network devices programmed →
 *   key server distributes keys (3a) and the terminal acknowledges →
 *   join.response.
 * Requests arrive sealed to the auth server and are forwarded unopened.
 *
 * Monitoring (1c, embodiment 4): every poll interval each key holder is
 * polled over its config channel (S401) about the members it holds; holders
 * answer (S402) or, not polled for a while, send continue (S403). Members
 * nobody vouches for miss polls (liveness.ts); after N they are evicted.
 * Leave (eviction, `leave` from a stopping agent, revoke, VPN delete) is
 * one path: memberships removed → reconcile: network devices programmed
 * without the member, its key holder told (S405), the key server told to
 * rekey the rest (S404).
 */
import type { Envelope } from '../../protocol/envelope.js';
import { asBody, bytes, list, num, str, type Body } from '../../protocol/body.js';
import type { ChannelMessage, Peer, Reply } from '../../protocol/peer.js';
import { parseTopic, topics } from '../../protocol/topics.js';
import { asReceiver } from '../../protocol/channel.js';
import { isKagiError } from '../../protocol/errors.js';
import { LivenessTable, type Transition } from './liveness.js';
import { planBandwidth } from './bandwidth-plan.js';
import { adminDoor } from './admin-door.js';
import { publicKeys } from '../identity.js';
import { every, startService, type RunningService, type ServiceContext } from '../service-host.js';
import type { DesiredState, NetworkDriver, VpnState } from '../../network/driver.js';

/** Reconciles start at least this many times their own length apart. */
const RECONCILE_SPACING = 3;

/** A poll round goes out in slices this far apart (ms). */
const POLL_SLICE_MS = 50;

export interface ConfigOptions {
  drivers: NetworkDriver[];
  /** The address a device connects from, where the broker tells us. */
  addressOf?(deviceId: string): string | undefined;
  /** S401: how often each key holder is polled (ms). */
  pollIntervalMs?: number;
  /** Polls missed in a row before a member is evicted. */
  evictAfter?: number;
  /** S403: a holder not polled for this long sends continue (ms). */
  continueAfterMs?: number;
  /** How often the tables are re-read and applied (ms). */
  reconcileMs?: number;
  /** Embodiment 5: the link's capacity (bits/s) the VPNs share; 0 = unknown, nothing is cut. */
  linkCapacity?: number;
}

/** Why a member is out of a VPN, as its holder is told (S405). */
export type LeaveReason = 'evicted' | 'revoked' | 'deleted' | 'left';

export function livenessOptions(o: Pick<ConfigOptions, 'pollIntervalMs' | 'evictAfter' | 'continueAfterMs'>): { pollIntervalMs: number; evictAfter: number; continueAfterMs: number } {
  const pollIntervalMs = o.pollIntervalMs ?? 30_000;
  const evictAfter = o.evictAfter ?? 3;
  const continueAfterMs = o.continueAfterMs ?? Math.round(pollIntervalMs * 2.5);
  if (!(pollIntervalMs >= 50)) throw new RangeError('the poll interval must be at least 50 ms');
  if (!Number.isInteger(evictAfter) || evictAfter < 1) throw new RangeError('evict-after must be a positive whole number of polls');
  // A member that is not polled must get its continue in before it is evicted.
  if (!(continueAfterMs > 0 && continueAfterMs < evictAfter * pollIntervalMs)) {
    throw new RangeError(`continue-after (${continueAfterMs} ms) must be below evict-after × poll interval (${evictAfter * pollIntervalMs} ms)`);
  }
  return { pollIntervalMs, evictAfter, continueAfterMs };
}

export async function startConfig(ctx: ServiceContext, o: ConfigOptions) {
  let peer!: Peer;
  const live = livenessOptions(o);
  const liveness = new LivenessTable(live.evictAfter);
  const wire = { pollIntervalMs: live.pollIntervalMs, continueAfterMs: live.continueAfterMs };
  /** Why a (vpn/member) is about to disappear from the tables, for its holder. */
  const reasons = new Map<string, LeaveReason>();

  async function ask(to: 'auth' | 'keys', body: Body): Promise<Body> {
    const r = await peer.request({ to, pkR: ctx.keys[to].publicKey, topic: topics.service(to, 'service'), type: 'service.request', body, timeoutMs: ctx.timeoutMs });
    r.secrets.destroy();
    return asBody(r.body);
  }

  /** Desired state of every network device, from the tables, with the bandwidth plan. */
  async function desired(): Promise<DesiredState> {
    const rows = await ctx.store.listVpns();
    const where = await ctx.store.allNetworkInfo();
    const vpns: VpnState[] = [];
    for (const v of rows) {
      const members = [];
      for (const m of await ctx.store.members(v.id)) {
        const info = where.get(m.deviceId);
        members.push({ deviceId: m.deviceId, address: info?.address ?? null, via: info?.relayId ?? null });
      }
      vpns.push({ id: v.id, protocol: v.protocol, port: v.port, members, priority: v.priority, rate: v.maxBandwidth, cut: false });
    }
    const plan = planBandwidth(vpns.map((v, i) => ({ id: v.id, priority: v.priority, maxBandwidth: rows[i]!.maxBandwidth, members: v.members.length })), o.linkCapacity ?? 0);
    plan.forEach((a, i) => Object.assign(vpns[i]!, { rate: a.rate, cut: a.state === 'cut' }));
    // The VPN management table shows the plan (1e: flag, firewall bandwidth total).
    for (const [i, v] of rows.entries()) {
      const rate = vpns[i]!.rate;
      const flag = vpns[i]!.cut ? 1 : 0;
      if (v.totalRate !== rate || v.flag !== flag) await ctx.store.updateVpn(v.id, { totalRate: rate, flag });
    }
    return { vpns, revoked: await ctx.store.revokedDevices() };
  }

  /** Members as of the last reconcile, so a removal can be told (S405). */
  let last: DesiredState = { vpns: [] };

  // One reconcile at a time, in order: a stale state applied after a newer
  // one would reopen or close the wrong thing and report false leaves.
  // Callers while one waits to start share it: it reads the tables after
  // all of their writes, and a burst of joins costs one read, not one each.
  //
  // A reconcile reads every member, tens of milliseconds at 10,000; joins
  // arriving back to back would keep the server doing little else. So runs
  // start at least RECONCILE_SPACING times their own length apart: a third
  // of the process at most, and a join waits at most that much longer
  // (with more joins sharing each run).
  let chain: Promise<void> = Promise.resolve();
  let queued: Promise<void> | null = null;
  let lastRun = { at: 0, ms: 0 };
  function reconcile(): Promise<void> {
    if (queued) return queued;
    const run = chain.then(async () => {
      const wait = lastRun.at + RECONCILE_SPACING * lastRun.ms - Date.now();
      if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
      queued = null;
      const at = Date.now();
      try {
        await reconcileOnce();
      } finally {
        lastRun = { at, ms: Date.now() - at };
      }
    });
    queued = run;
    chain = run.catch(() => {});
    return run;
  }

  async function reconcileOnce(): Promise<void> {
    const state = await desired();
    for (const d of o.drivers) await d.apply(state);
    const now = new Map(state.vpns.map((v) => [v.id, new Set(v.members.map((m) => m.deviceId))]));
    const shrunk = new Set<string>();
    for (const v of last.vpns) {
      const still = now.get(v.id);
      for (const m of v.members) {
        if (still?.has(m.deviceId)) continue;
        const key = `${v.id}/${m.deviceId}`;
        const reason = reasons.get(key) ?? (still ? 'revoked' : 'deleted');
        reasons.delete(key);
        // A holder that left on its own is going away: nobody to tell.
        if (reason !== 'left' && leading()) void tell(v.id, m.deviceId, m.via, { op: 'left', reason }, `out (${reason})`);
        shrunk.add(v.id);
      }
    }
    for (const v of state.vpns) {
      const before = last.vpns.find((x) => x.id === v.id);
      if (before && (before.rate !== v.rate || before.cut !== v.cut) && leading()) {
        ctx.log('info', `config: ${v.id} ${v.cut ? 'cut' : `may send ${v.rate || 'unlimited'} bit/s`} (bandwidth plan)`);
        for (const m of v.members) if (before.members.some((x) => x.deviceId === m.deviceId)) void tell(v.id, m.deviceId, m.via, { op: 'rate', rate: v.rate, cut: v.cut }, v.cut ? 'cut' : 'rate');
      }
    }
    last = state;
    liveness.retain(new Set(state.vpns.flatMap((v) => v.members.map((m) => m.deviceId))));
    // Every instance programs its network devices; the lease holder alone
    // tells members and asks for rekeys (once, not once per instance).
    if (leading()) for (const v of state.vpns) if (shrunk.has(v.id) && v.members.length > 0) void rekey(v.id);
  }

  /** S404 and beyond: a VPN lost a member; the key server rekeys the rest. */
  async function rekey(vpnId: string): Promise<void> {
    try {
      const r = await ask('keys', { op: 'keys.rekey', vpn: vpnId, why: 'a member left' });
      if (!r.ok) throw new Error(String(r.reason));
    } catch (e) {
      ctx.log('warn', `config: rekey of ${vpnId} failed: ${(e as Error).message}`);
    }
  }

  /** Tell the holder of a member's keys about the member in a VPN (S405: left; embodiment 5: rate, cut). */
  async function tell(vpnId: string, deviceId: string, via: string | null, what: Body, summary: string): Promise<void> {
    const holder = via ?? deviceId;
    try {
      const d = await ctx.store.getDevice(holder);
      if (!d || d.revoked) return;
      const r = await peer.request({ to: holder, pkR: d.publicKey, topic: topics.inbox(holder), type: 'notice', body: { ...what, vpn: vpnId, member: deviceId }, timeoutMs: ctx.timeoutMs });
      r.secrets.destroy();
      ctx.log('info', `config: told ${holder} that ${deviceId} is ${summary} in ${vpnId}`);
    } catch (e) {
      ctx.log('warn', `config: could not tell ${holder} that ${deviceId} is ${summary} in ${vpnId}: ${(e as Error).message}`);
    }
  }

  /** The device's own authentication renews its config channel (it does the same). */
  async function renewChannel(deviceId: string, v: Body): Promise<void> {
    await ctx.store.channels('config').set(deviceId, asReceiver({ up: bytes(v, 'channelUp', 32), down: bytes(v, 'channelDown', 32) }));
  }

  async function refuseDevice(v: Body): Promise<void> {
    if (!(v.replyKey instanceof Uint8Array)) return; // nothing to seal a refusal with
    await peer.sendReply(str(v, 'replyTo', 64), num(v, 'reqId'), bytes(v, 'replyKey'), { type: 'error', body: { reason: v.reason } });
  }

  async function configure(v: Body): Promise<void> {
    const deviceId = str(v, 'deviceId', 64);
    const replyTo = str(v, 'replyTo', 64);
    const via = v.via ? asBody(v.via) : null;
    // 1f: where the device is: its broker address, or which relay port.
    const address = via ? null : (o.addressOf?.(deviceId) ?? null);
    await ctx.store.putNetworkInfo({ deviceId, address, relayId: via ? str(via, 'relay', 64) : null, relayPort: via ? str(via, 'port', 64) : null, updatedAt: Date.now() });
    const stored = await ctx.store.getConfig(deviceId);
    const config = stored?.body ?? { deviceId, kind: v.kind, pollIntervalMs: o.pollIntervalMs ?? 30_000, services: publicKeys(ctx.keys) };
    if (!stored) await ctx.store.putConfig({ deviceId, body: config });
    const reply: Reply = { type: 'config.response', body: { config, liveness: wire } };
    if (!via) await renewChannel(deviceId, v);
    await peer.sendReply(replyTo, num(v, 'reqId'), bytes(v, 'replyKey'), reply);
    ctx.log('info', `config: sent config to ${deviceId}`);
  }

  async function join(v: Body): Promise<void> {
    const deviceId = str(v, 'deviceId', 64);
    const replyTo = str(v, 'replyTo', 64);
    const userId = str(v, 'user', 64);
    const vpns = list(v, 'vpns').map((x) => asBody(x));
    const via = v.via ? asBody(v.via) : null;
    if (!via) {
      // S302–S303: the address the broker sees, or (behind an external
      // broker, which does not tell us) the one the device reported.
      const reported = Array.isArray(v.addresses) ? v.addresses.filter((a): a is string => typeof a === 'string' && a.length <= 64)[0] : undefined;
      const address = o.addressOf?.(deviceId) ?? reported ?? (await ctx.store.getNetworkInfo(deviceId))?.address ?? null;
      await ctx.store.putNetworkInfo({ deviceId, address, relayId: null, relayPort: null, updatedAt: Date.now() });
    }
    const info = await ctx.store.getNetworkInfo(deviceId);
    const networkId = via ? `${str(via, 'relay', 64)}:${str(via, 'port', 64)}` : (info?.address ?? 'broker');
    for (const x of vpns) {
      const old = (await ctx.store.membershipsOf(deviceId)).find((m) => m.vpnId === x.id);
      await ctx.store.putMember({ vpnId: str(x, 'id', 64), deviceId, userId, keyId: old?.keyId ?? 0, networkId });
    }
    await reconcile(); // program the network devices before keys go out
    // Keys for a plaintext terminal go to its relay, for its port.
    const issued = await ask('keys', { op: 'keys.issue', deviceId, vpns: vpns.map((x) => x.id), ...(via ? { deliverTo: via.relay, port: via.port } : {}) });
    if (!issued.ok) {
      ctx.metrics.count('kagi_refusals_total', { reason: 'keys' });
      return refuseDevice({ ...v, reason: `key distribution failed: ${String(issued.reason)}` });
    }
    const epochs = asBody(issued.epochs);
    for (const x of vpns) await ctx.store.putMember({ vpnId: str(x, 'id', 64), deviceId, userId, keyId: num(epochs, str(x, 'id', 64)), networkId });
    const out = vpns.map((x) => {
      const id = str(x, 'id', 64);
      const planned = last.vpns.find((p) => p.id === id) ?? { rate: 0, cut: false };
      return { id, protocol: x.protocol, port: x.port, epoch: epochs[id], rate: planned.rate, cut: planned.cut };
    });
    liveness.forget(deviceId); // a fresh start: ACTIVE, nothing missed
    await ctx.store.setCommunicating(deviceId, true, Date.now());
    if (!via) await renewChannel(deviceId, v);
    await peer.sendReply(replyTo, num(v, 'reqId'), bytes(v, 'replyKey'), { type: 'join.response', body: { user: userId, vpns: out, liveness: wire } });
    ctx.log('info', `config: ${deviceId} (${userId}) joined ${out.map((x) => x.id).join(', ')}`);
    ctx.metrics.count('kagi_joins_total');
  }

  /** Front door: the device's request is sealed to auth; forward it unopened. */
  async function onForeign(env: Envelope, raw: Uint8Array): Promise<void> {
    if (env.to !== 'auth' || (env.type !== 'config.request' && env.type !== 'join.request')) return;
    const op = env.type === 'config.request' ? 'device.auth' : 'user.join';
    const verdict = await ask('auth', { op, envelope: raw });
    if (!verdict.ok) return refuseDevice(verdict);
    return op === 'device.auth' ? configure(verdict) : join(verdict);
  }

  /**
   * A device connected to the broker from an address (S304–S306): if it is
   * a VPN member somewhere else, record the new address and reconcile, so
   * the old address is closed and the new one opened.
   */
  async function addressChanged(deviceId: string, address: string): Promise<void> {
    const info = await ctx.store.getNetworkInfo(deviceId);
    if (!info || info.relayId || info.address === address) return;
    await ctx.store.putNetworkInfo({ ...info, address, updatedAt: Date.now() });
    if ((await ctx.store.membershipsOf(deviceId)).length === 0) return;
    ctx.log('info', `config: ${deviceId} moved from ${info.address ?? '-'} to ${address}`);
    await reconcile();
  }

  // ---- Monitoring (embodiment 4) ----

  /** Key holder of each member, with the VPNs and current epochs it should hold. */
  async function holders(): Promise<Map<string, { id: string; vpns: { id: string; epoch: number }[] }[]>> {
    const out = new Map<string, { id: string; vpns: { id: string; epoch: number }[] }[]>();
    const where = await ctx.store.allNetworkInfo();
    for (const v of await ctx.store.listVpns()) {
      const epoch = (await ctx.store.currentSessionKey(v.id))?.epoch ?? 0;
      for (const m of await ctx.store.members(v.id)) {
        const holder = where.get(m.deviceId)?.relayId ?? m.deviceId;
        const list = out.get(holder) ?? [];
        let e = list.find((x) => x.id === m.deviceId);
        if (!e) list.push((e = { id: m.deviceId, vpns: [] }));
        e.vpns.push({ id: v.id, epoch });
        out.set(holder, list);
      }
    }
    return out;
  }

  async function holderOf(member: string): Promise<string> {
    return (await ctx.store.getNetworkInfo(member))?.relayId ?? member;
  }

  async function onTransition(t: Transition | null): Promise<void> {
    if (!t) return;
    if (t.to === 'EVICTED') return evict(t.member, `${t.missed} polls missed`);
    await ctx.store.setCommunicating(t.member, t.to === 'ACTIVE', Date.now());
    if (t.to === 'MISSING') ctx.log('info', `config: ${t.member} missed a poll (${t.missed}/${live.evictAfter}): not communicating`);
    else ctx.log('info', `config: ${t.member} answers again: communicating`);
  }

  /** S401 to one holder; each of its members counts a poll. */
  async function pollHolder(holder: string, members: { id: string; vpns: { id: string; epoch: number }[] }[]): Promise<void> {
    const now = Date.now();
    for (const m of members) await onTransition(liveness.polled(m.id, now));
    const still = members.filter((m) => liveness.state(m.id) !== undefined && liveness.state(m.id) !== 'EVICTED');
    if (still.length === 0) return;
    try {
      await peer.sendChannel(holder, { type: 'poll', body: { members: still } });
    } catch (e) {
      // No channel (never authenticated since the tables were made): the poll counts as missed.
      if (!isKagiError(e, 'key')) throw e;
      ctx.log('debug', `config: cannot poll ${holder}: ${e.message}`);
    }
  }

  // While our own link is down no poll goes out, so none may count as missed.
  let wasDown = false;
  async function pollRound(): Promise<void> {
    if (!leading()) return;
    if (!running.link.connected) return void (wasDown = true);
    if (wasDown) {
      wasDown = false;
      liveness.restart();
      ctx.log('info', 'config: back on the broker: missed polls count again from the next round');
    }
    try {
      // Spread over half the interval, in slices every POLL_SLICE_MS: a
      // burst of N polls is a burst of N replies, more than a broker queues
      // for one client (Mosquitto's max_queued_messages is 1000), and what
      // it drops then includes joins. A slice goes out at once, so its
      // store reads and seq reservations share statements (coalesce.ts).
      for (const m of liveness.rejoined(await ctx.store.notCommunicating())) ctx.log('info', `config: ${m} joined again through another instance: missed polls start over`);
      const all = [...(await holders())];
      const slices = Math.max(1, Math.floor(live.pollIntervalMs / 2 / POLL_SLICE_MS));
      const per = Math.ceil(all.length / slices);
      const t0 = Date.now();
      for (let i = 0; i * per < all.length; i++) {
        if (!leading()) return;
        const wait = t0 + i * POLL_SLICE_MS - Date.now();
        if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
        await Promise.all(all.slice(i * per, (i + 1) * per).map(([holder, members]) => pollHolder(holder, members)));
      }
    } catch (e) {
      if (!running.link.connected) wasDown = true; // lost the link mid-round
      throw e;
    }
  }

  /** Leave steps for a member that stopped answering. */
  async function evict(member: string, why: string): Promise<void> {
    ctx.metrics.count('kagi_evictions_total');
    return removeMember(member, null, 'evicted', why);
  }

  /** Take `member` out of `vpnIds` (all when null) and run the leave steps. */
  async function removeMember(member: string, vpnIds: string[] | null, reason: LeaveReason, why: string): Promise<void> {
    const out = [];
    for (const m of await ctx.store.membershipsOf(member)) {
      if (vpnIds && !vpnIds.includes(m.vpnId)) continue;
      reasons.set(`${m.vpnId}/${member}`, reason);
      if (await ctx.store.removeMember(m.vpnId, member)) out.push(m.vpnId);
    }
    liveness.forget(member);
    await ctx.store.setCommunicating(member, true, Date.now()); // not a member: no mark
    if (out.length === 0) return;
    ctx.log(reason === 'evicted' ? 'warn' : 'info', `config: ${member} ${reason === 'evicted' ? 'evicted from' : 'left'} ${out.join(', ')} (${why})`);
    await reconcile();
  }

  /** What a holder says it holds (S402, S403, leave): only members it really holds count. */
  async function claimed(holder: string, b: Body): Promise<{ member: string; vpns: string[] }[]> {
    const out = [];
    for (const x of list(b, 'members')) {
      const m = asBody(x);
      const member = str(m, 'member', 64);
      if ((await holderOf(member)) !== holder) continue;
      out.push({ member, vpns: list(m, 'vpns').map((y) => str(asBody(y), 'id', 64)) });
    }
    return out;
  }

  /** S402 / S403: the holder vouches for its members; stale keys get a notice. */
  async function vouch(holder: string, b: Body): Promise<void> {
    const now = Date.now();
    for (const c of await claimed(holder, b)) {
      const mine = new Set((await ctx.store.membershipsOf(c.member)).map((m) => m.vpnId));
      if (mine.size > 0) await onTransition(liveness.vouched(c.member, now));
      // Keys for a VPN it is no longer in (evicted while frozen): tell it.
      for (const vpn of c.vpns) {
        if (mine.has(vpn)) continue;
        const reason = (await ctx.store.getVpn(vpn)) ? 'evicted' : 'deleted';
        void tell(vpn, c.member, holder === c.member ? null : holder, { op: 'left', reason }, `out (${reason})`);
      }
    }
  }

  async function onChannel(m: ChannelMessage): Promise<Reply | undefined> {
    const b = asBody(m.body);
    const holder = m.env.from;
    if (m.env.type === 'poll.reply') await vouch(holder, b);
    else if (m.env.type === 'continue') {
      ctx.log('info', `config: continue from ${holder}`);
      await vouch(holder, b);
    } else if (m.env.type === 'leave') {
      for (const c of await claimed(holder, b)) await removeMember(c.member, c.vpns, 'left', `${holder} is shutting down`);
    }
    return undefined;
  }

  /** The broker's will says a holder's connection died: poll it now (counts like any poll). */
  async function onState(topic: string, payload: Uint8Array): Promise<void> {
    const t = parseTopic(topic);
    if (t?.area !== 'dev' || t.b !== 'state') return;
    const state = new TextDecoder().decode(payload);
    if (state !== 'online' && state !== 'offline') return;
    if (!leading()) return; // every instance hears it; the lease holder records it
    if (!(await ctx.store.getDevice(t.a))) return; // not ours (retained leftovers on a shared broker)
    await ctx.store.setPresence(t.a, state === 'online', Date.now());
    if (state !== 'offline') return;
    const members = (await holders()).get(t.a);
    if (!members) return;
    ctx.log('info', `config: ${t.a} went offline (will); polling it now`);
    await pollHolder(t.a, members);
  }

  // Duties that must happen once (polls, telling members, leave rekeys) run where the lease is.
  let started: RunningService | undefined; // set once connected; messages may come sooner
  const leading = () => started?.lease.held === true;
  const running = (started = await startService('config', ctx, { onForeign, onChannel, onRequest: adminDoor(ctx) }, (p) => (peer = p), {
    topics: [topics.state('+')],
    onMessage: (topic, payload) => void onState(topic, payload).catch((e) => ctx.log('warn', `config: ${(e as Error).message}`)),
  }));
  await reconcile(); // heal whatever changed while we were down
  // Missed polls are counted in memory by the lease holder: whoever takes
  // the duty (at start, or from an instance that died) starts every member
  // ACTIVE, and so must its mark in the table the key server reads be.
  const lead = async () => {
    liveness.retain(new Set());
    for (const id of await ctx.store.notCommunicating()) await ctx.store.setCommunicating(id, true, Date.now());
    ctx.log('info', `config: holding the lease: polling members${ctx.instance ? ` (instance ${ctx.instance.name})` : ''}`);
  };
  if (running.lease.held) await lead();
  running.lease.onChange((held) => void (held ? lead() : Promise.resolve(ctx.log('warn', 'config: lost the lease: another instance polls'))).catch((e) => ctx.log('warn', `config: ${(e as Error).message}`)));
  // Admin changes (kagi vpn delete, grants) land in the store from other
  // processes; a short reconcile loop applies them to the network devices
  // and tells the members within about one period.
  const timers = [
    // Idle, at most a tenth of the process: the period stretches to ten runs' length.
    every(o.reconcileMs ?? 500, async () => {
      if (Date.now() - lastRun.at >= 10 * lastRun.ms) await reconcile();
    }, (e) => ctx.log('warn', `config: reconcile failed: ${e.message}`)),
    every(live.pollIntervalMs, pollRound, (e) => ctx.log('warn', `config: poll round failed: ${e.message}`)),
  ];
  return {
    ...running,
    reconcile,
    addressChanged,
    liveness,
    close: async () => {
      for (const t of timers) clearInterval(t);
      await running.close();
    },
  };
}
