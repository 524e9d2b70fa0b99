/**
 * Membership and the network devices (1b, S108, S304–S306, S404–S405,
 * embodiment 5): the desired state of every network device is computed
 * from the tables (with the bandwidth plan) and applied by one reconcile
 * at a time. Every removal leaves, in its own transaction, a rekey owed to
 * the VPN (S404; the key server pays it) and a notice owed to the member's
 * key holder (S405), which the lease holder delivers after each reconcile
 * until it gets through — so a removal made while no control plane ran, or
 * cut short by a crash or a handover, is still told;
 * a VPN whose planned rate changes is told to its members, and a device
 * granted a VPN it has not joined is told so (grant-notices.ts). Leave is
 * one path for every way out: memberships removed here, the rest follows
 * from the next reconcile. Notices to one holder go out one at a time, in
 * order: "left (deleted)" before "granted" when a VPN is made again.
 */
import type { Body } from '../../protocol/body.js';
import { topics } from '../../protocol/topics.js';
import { LEAVE_REKEY } from '../keys/keys.js';
import type { DesiredState, VpnState } from '../../network/driver.js';
import type { VpnRow } from '../store/store.js';
import { planBandwidth } from './bandwidth-plan.js';
import { grantNotices } from './grant-notices.js';
import type { ConfigContext } from './context.js';

/** Reconciles start at least this many times their own length apart. */
const RECONCILE_SPACING = 3;
/**
 * The idle loop's full runs start at least ten times the last full run's
 * length apart (decision 35), and at least fifty times the CPU it took
 * (decision 126): at most a fiftieth of the process. Ten of its length
 * alone let a run that is all CPU (reading 10,000 members) take a tenth of
 * an idle core; fifty of its length would have held back a run that mostly
 * waits on its network devices (a Mosquitto's dynsec, nft), which costs
 * this process little. Admin changes made by another process are applied
 * within about a second up to a few thousand members and within a few
 * seconds at 10,000; joins, leaves and removals reconcile at once.
 */
const IDLE_LENGTHS = 10;
const IDLE_CPU_SPACING = 50;

/** Why a member is out of a VPN, as its holder is told (S405). */
export type LeaveReason = 'evicted' | 'revoked' | 'deleted' | 'left';

export interface Membership {
  /**
   * Apply the tables to the network devices; callers waiting for the same
   * run share it. With `devices`, only their rows changed (a join, a move):
   * the run reads theirs and keeps the rest as last applied (patch).
   */
  reconcile(devices?: readonly string[]): Promise<void>;
  /** The idle loop: reconcile unless the last run was recent for its cost. */
  reconcileIfIdle(): Promise<void>;
  /** A VPN's planned rate and cut as of the last reconcile. */
  planned(vpnId: string): { rate: number; cut: boolean };
  /** Take `member` out of `vpnIds` (all when null) and run the leave steps. */
  removeMember(member: string, vpnIds: string[] | null, reason: LeaveReason, why: string): Promise<void>;
  /** Tell the holder of a member's keys about the member in a VPN (S405: left; embodiment 5: rate, cut). */
  tell(vpnId: string, deviceId: string, via: string | null, what: Body, summary: string): Promise<boolean>;
  /** A device connected from an address (S304–S306). */
  addressChanged(deviceId: string, address: string): Promise<void>;
}

export function membership(c: ConfigContext): Membership {
  const { ctx, o } = c;
  /** Members as of the last reconcile, so a removal can be told (S405). */
  let last: DesiredState = { vpns: [] };
  /** The VPN rows the last full read saw (with the plan written since), one per `last.vpns` entry, same order. */
  let lastRows: VpnRow[] = [];
  /** After each reconcile: devices granted a VPN they have not joined are told. */
  const granted = grantNotices(c, tell);

  /** A state to apply, with the VPN rows it was planned from (same order). */
  type Planned = { state: DesiredState; rows: VpnRow[] };

  /** Desired state of every network device, from the tables, with the bandwidth plan. */
  async function desired(): Promise<Planned> {
    const rows = await ctx.store.listVpns();
    const placed = await ctx.store.placedMembers(); // one query for every VPN's members and where they are
    const vpns = rows.map((v): VpnState => ({ id: v.id, protocol: v.protocol, port: v.port, members: placed.get(v.id) ?? [], priority: v.priority, rate: v.maxBandwidth, cut: false }));
    const planned = await plan(rows, vpns);
    return { state: { vpns: planned.vpns, revoked: await ctx.store.revokedDevices() }, rows: planned.rows };
  }

  /**
   * The state as last applied with the rows of `devices` read again (a join
   * or a move touches one device's rows): two indexed reads per device
   * instead of every member, device and network info row, which at 10,000
   * members was most of a join's cost. Null when a device is in a VPN the
   * last full read did not see (made since): then everything is read.
   * What other writers changed is left to the next full run (removals
   * other than a member's own leave, admin operations and the idle loop
   * run one); a patch never undoes what was applied, since it starts from
   * it. So only a sole config server
   * patches: instances share network devices (a Mosquitto's dynsec) that
   * each would set back to its own view of the others' joins.
   */
  async function patched(devices: Set<string>): Promise<Planned | null> {
    if (ctx.instance) return null;
    const placed = new Map<string, { vpns: Set<string>; address: string | null; via: string | null }>();
    for (const d of devices) {
      const info = await ctx.store.getNetworkInfo(d);
      placed.set(d, { vpns: new Set((await ctx.store.membershipsOf(d)).map((m) => m.vpnId)), address: info?.address ?? null, via: info?.relayId ?? null });
    }
    const known = new Set(last.vpns.map((v) => v.id));
    for (const p of placed.values()) for (const v of p.vpns) if (!known.has(v)) return null;
    const vpns = last.vpns.map((v) => {
      const joins = [...placed].filter(([, p]) => p.vpns.has(v.id));
      if (joins.length === 0 && !v.members.some((m) => devices.has(m.deviceId))) return v; // untouched: the same object
      const members = v.members.filter((m) => !devices.has(m.deviceId));
      for (const [deviceId, p] of joins) insertSorted(members, { deviceId, address: p.address, via: p.via });
      return { ...v, members };
    });
    const planned = await plan(lastRows, vpns);
    return { state: { vpns: planned.vpns, ...(last.revoked ? { revoked: last.revoked } : {}) }, rows: planned.rows };
  }

  /** The bandwidth plan over `vpns` (rows: their VPN rows, same order), written to the VPN table where it changed (1e: flag, firewall bandwidth total). */
  async function plan(rows: VpnRow[], vpns: VpnState[]): Promise<{ vpns: VpnState[]; rows: VpnRow[] }> {
    const assigned = planBandwidth(vpns.map((v, i) => ({ id: v.id, priority: v.priority, maxBandwidth: rows[i]!.maxBandwidth, members: v.members.length })), o.linkCapacity ?? 0);
    const out = vpns.map((v, i) => {
      const rate = assigned[i]!.rate;
      const cut = assigned[i]!.state === 'cut';
      return v.rate === rate && v.cut === cut ? v : { ...v, rate, cut };
    });
    const written: VpnRow[] = [];
    for (const [i, v] of rows.entries()) {
      const { rate, cut } = out[i]!;
      const flag = cut ? 1 : 0;
      if (v.totalRate !== rate || v.flag !== flag) await ctx.store.updateVpn(v.id, { totalRate: rate, flag });
      written.push(v.totalRate === rate && v.flag === flag ? v : { ...v, totalRate: rate, flag });
    }
    return { vpns: out, rows: written };
  }

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
  //
  // A run waiting to start is full if any caller asked for a full one,
  // else a patch of every device its callers named.
  let chain: Promise<void> = Promise.resolve();
  let queued: { run: Promise<void>; scope: Set<string> | null } | null = null;
  let lastRun = { at: 0, ms: 0 };
  /** The last full run: the idle loop's period stretches with its length, not a patch's. */
  let lastFull = { at: 0, ms: 0, cpuMs: 0 };
  function reconcile(devices?: readonly string[]): Promise<void> {
    if (queued) {
      if (!devices) queued.scope = null;
      else for (const d of devices) queued.scope?.add(d);
      return queued.run;
    }
    const q: { run: Promise<void>; scope: Set<string> | null } = { run: Promise.resolve(), scope: devices ? new Set(devices) : null };
    q.run = chain.then(async () => {
      const wait = lastRun.at + RECONCILE_SPACING * lastRun.ms - Date.now();
      if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
      queued = null; // from here a caller's writes may come after our reads: it waits for the next run
      const at = Date.now();
      // The process's CPU over a full run: its own, and whatever ran beside
      // it while it waited (a storm's joins), which spaces idle runs more.
      // Read for full runs only: two getrusage calls were 1% of a re-join,
      // for a figure a patch never uses.
      const cpu0 = q.scope === null ? process.cpuUsage() : undefined;
      let full = q.scope === null;
      try {
        full = await reconcileOnce(q.scope);
      } finally {
        lastRun = { at, ms: Date.now() - at };
        if (full) {
          // A patch that had to read everything (a VPN it did not know) counts its whole length as CPU: at most what it took.
          const cpu = cpu0 ? process.cpuUsage(cpu0) : undefined;
          lastFull = { ...lastRun, cpuMs: cpu ? (cpu.user + cpu.system) / 1000 : lastRun.ms };
        }
      }
    });
    queued = q;
    chain = q.run.catch(() => {});
    return q.run;
  }

  /** One run, full (scope null) or a patch of the scope's devices; true if it was full. */
  async function reconcileOnce(scope: Set<string> | null): Promise<boolean> {
    const patch = scope && (await patched(scope));
    const { state, rows } = patch ?? (await desired());
    for (const d of o.drivers) await d.apply(state);
    // A VPN object a patch did not touch is the one applied last: no change to look for.
    const now = new Map(state.vpns.map((v) => [v.id, v]));
    const before = new Map(last.vpns.map((v) => [v.id, v]));
    // A patch changed only its devices' rows: whether a VPN lost a member
    // is a question about them alone (no set of every member per join).
    const changed = patch ? scope : null;
    const shrunk = new Set<string>();
    for (const v of last.vpns) {
      const n = now.get(v.id);
      if (n === v) continue;
      const still = new Set(n?.members.filter((m) => !changed || changed.has(m.deviceId)).map((m) => m.deviceId));
      if (v.members.some((m) => (!changed || changed.has(m.deviceId)) && !still.has(m.deviceId))) shrunk.add(v.id);
    }
    for (const v of state.vpns) {
      const was = before.get(v.id);
      if (was && was !== v && (was.rate !== v.rate || was.cut !== v.cut) && c.leading()) {
        ctx.log('info', `config: ${v.id} ${v.cut ? 'cut' : `may send ${v.rate || 'unlimited'} bit/s`} (bandwidth plan)`);
        const had = new Set(was.members.map((x) => x.deviceId));
        for (const m of v.members) if (had.has(m.deviceId)) void tell(v.id, m.deviceId, m.via, { op: 'rate', rate: v.rate, cut: v.cut }, v.cut ? 'cut' : 'rate');
      }
    }
    last = state;
    lastRows = rows;
    // Every instance programs its network devices; the lease holder alone
    // tells members and asks for rekeys (once, not once per instance).
    if (c.leading()) for (const v of state.vpns) if (shrunk.has(v.id) && v.members.length > 0) void rekey(v.id);
    if (patch) return false;
    // Full runs only: what a joining, moving or leaving device's rows cannot
    // change. Notices are owed by removals other than own leaves, each
    // followed by a full run; grants made after a join are found by the
    // next full one (a join takes every VPN its user is granted as it joins).
    c.liveness.retain(new Set(state.vpns.flatMap((v) => v.members.map((m) => m.deviceId))));
    if (c.leading()) await owed(); // before grants: "left (deleted)" goes out before "granted"
    await granted(state);
    return true;
  }

  /** S404 and beyond: a VPN lost a member; the key server rekeys the rest. */
  async function rekey(vpnId: string): Promise<void> {
    try {
      const r = await c.ask('keys', { op: 'keys.rekey', vpn: vpnId, why: LEAVE_REKEY });
      if (!r.ok) throw new Error(String(r.reason));
    } catch (e) {
      ctx.log('warn', `config: rekey of ${vpnId} failed: ${(e as Error).message}`);
    }
  }

  /**
   * Queue every S405 notice the store says is owed (the lease holder only).
   * One in flight per notice; one that did not get through waits a backoff
   * (the holder may be away for a while) and is tried again after a later
   * reconcile; it is forgotten once delivered, or when its holder is gone.
   */
  const owing = new Map<string, { busy: boolean; retryAt: number; tries: number }>();
  async function owed(): Promise<void> {
    const now = Date.now();
    for (const n of await ctx.store.owedNotices()) {
      const key = `${n.vpnId}/${n.memberId}/${n.since}`;
      const s = owing.get(key) ?? { busy: false, retryAt: 0, tries: 0 };
      if (s.busy || now < s.retryAt) continue;
      owing.set(key, { ...s, busy: true });
      void tell(n.vpnId, n.memberId, n.holderId === n.memberId ? null : n.holderId, { op: 'left', reason: n.reason }, `out (${n.reason})`)
        .then(async (done) => {
          if (!done) return void owing.set(key, { busy: false, tries: s.tries + 1, retryAt: Date.now() + Math.min(60_000, 1000 * 2 ** s.tries) });
          await ctx.store.noticeDone(n);
          owing.delete(key);
        })
        .catch((e: Error) => (ctx.log('warn', `config: notice to ${n.holderId}: ${e.message}`), owing.set(key, { busy: false, tries: s.tries + 1, retryAt: Date.now() + 5000 })));
    }
  }

  /** The last notice queued per holder, so the next waits for it. */
  const queues = new Map<string, Promise<boolean>>();
  function tell(vpnId: string, deviceId: string, via: string | null, what: Body, summary: string): Promise<boolean> {
    const holder = via ?? deviceId;
    const next = (queues.get(holder) ?? Promise.resolve(true)).then(() => tellNow(vpnId, deviceId, holder, what, summary));
    queues.set(holder, next);
    void next.then(() => queues.get(holder) === next && queues.delete(holder));
    return next;
  }

  /**
   * One notice: true once the holder acknowledged it, or when there is no
   * holder to tell (unknown, revoked). Failures are logged, never thrown
   * (a holder away must not stop the rest).
   */
  async function tellNow(vpnId: string, deviceId: string, holder: string, what: Body, summary: string): Promise<boolean> {
    try {
      const d = await ctx.store.getDevice(holder);
      if (!d || d.revoked) return true;
      const r = await c.peer().request({ to: holder, pkR: d.publicKey, topic: topics.inbox(holder), type: 'notice', body: { ...what, vpn: vpnId, member: deviceId }, timeoutMs: ctx.timeoutMs });
      r.secrets.destroy();
      ctx.log('info', `config: told ${holder} that ${deviceId} is ${summary} in ${vpnId}`);
      return true;
    } catch (e) {
      ctx.log('warn', `config: could not tell ${holder} that ${deviceId} is ${summary} in ${vpnId}: ${(e as Error).message}`);
      return false;
    }
  }

  async function removeMember(member: string, vpnIds: string[] | null, reason: LeaveReason, why: string): Promise<void> {
    const out = [];
    for (const m of await ctx.store.membershipsOf(member)) {
      if (vpnIds && !vpnIds.includes(m.vpnId)) continue;
      // A holder that left on its own is going away: nobody to tell.
      if (await ctx.store.removeMember(m.vpnId, member, reason === 'left' ? undefined : reason)) out.push(m.vpnId);
    }
    c.liveness.forget(member);
    await ctx.store.setCommunicating(member, true, Date.now()); // not a member: no mark
    if (out.length === 0) return;
    // kagi why says when and why a member was evicted (the membership is gone).
    if (reason === 'evicted') await ctx.store.noteEviction(member, Date.now(), out, why).catch((e: Error) => ctx.log('warn', `config: recording the eviction of ${member}: ${e.message}`));
    ctx.log(reason === 'evicted' ? 'warn' : 'info', `config: ${member} ${reason === 'evicted' ? 'evicted from' : 'left'} ${out.join(', ')} (${why})`);
    // A member's own leave owes no notice and changes its own rows only: a
    // patch, as a join is (its rows, not every member's: a leave storm from
    // a full fleet read the whole fleet per run). Evictions, revocations
    // and deletions owe notices, which full runs deliver.
    await reconcile(reason === 'left' ? [member] : undefined);
  }

  /**
   * If the device is a VPN member somewhere else, record the new address
   * and reconcile, so the old address is closed and the new one opened.
   */
  async function addressChanged(deviceId: string, address: string): Promise<void> {
    const info = await ctx.store.getNetworkInfo(deviceId);
    if (!info || info.relayId || info.address === address) return;
    await ctx.store.putNetworkInfo({ ...info, address, updatedAt: Date.now() });
    if ((await ctx.store.membershipsOf(deviceId)).length === 0) return;
    ctx.log('info', `config: ${deviceId} moved from ${info.address ?? '-'} to ${address}`);
    await reconcile([deviceId]);
  }

  return {
    reconcile,
    // Idle, at most a fiftieth of the process: ten full runs' length, or fifty of their CPU.
    reconcileIfIdle: async () => {
      if (Date.now() - lastFull.at >= Math.max(IDLE_LENGTHS * lastFull.ms, IDLE_CPU_SPACING * lastFull.cpuMs)) await reconcile();
    },
    planned: (vpnId) => last.vpns.find((p) => p.id === vpnId) ?? { rate: 0, cut: false },
    removeMember,
    tell,
    addressChanged,
  };
}

/** Insert `m` into members sorted by device id (the order the full read gives). */
function insertSorted(members: VpnState['members'], m: VpnState['members'][number]): void {
  let lo = 0;
  let hi = members.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (members[mid]!.deviceId < m.deviceId) lo = mid + 1;
    else hi = mid;
  }
  members.splice(lo, 0, m);
}
