/**
 * Monitoring (1c, embodiment 4): every poll interval each key holder is
 * polled over its config channel (S401) about the members it holds; holders
 * answer (S402) or, not polled for a while, send continue (S403). Members
 * nobody vouches for miss polls (liveness.ts); after N they are evicted
 * through membership's leave steps. Only polls that reached the holder's
 * broker count (reach.ts), and the counts are kept in the store, so a
 * restart or a new lease holder resumes them. A holder's retained state
 * topic is recorded as its presence, and the broker's will makes it polled
 * at once. All of it is a once-only duty: it runs where the lease is.
 */
import { asBody, list, str, type Body } from '../../protocol/body.js';
import type { ChannelMessage, Reply } from '../../protocol/peer.js';
import { parseState } from '../../protocol/topics.js';
import { isKagiError } from '../../protocol/errors.js';
import type { Transition } from './liveness.js';
import { Reach } from './reach.js';
import type { ConfigContext } from './context.js';
import type { Membership } from './membership.js';
import type { DeviceRow } from '../store/store.js';
import { MAX_MEMBERS_PER_MESSAGE, MAX_VPNS_PER_MEMBER, StaleClaims } from './stale-claims.js';

/** A poll round goes out in slices this far apart (ms). */
const POLL_SLICE_MS = 50;

type Held = { id: string; vpns: { id: string; epoch: number }[] };

export interface Monitoring {
  /** One poll round (every poll interval). */
  pollRound(): Promise<void>;
  /** S402, S403 and leave (Peer's onChannel). */
  onChannel(m: ChannelMessage): Promise<Reply | undefined>;
  /** A device's retained state topic (online, or offline by will or goodbye). */
  onState(topic: string, payload: Uint8Array): Promise<void>;
  /** This instance took the lease: missed polls resume from the store. */
  lead(): Promise<void>;
  /** A device connected to the embedded broker. */
  connected(deviceId: string): void;
  /** The device proved itself in a request of its own (config or join): as good as an answer to a poll. */
  alive(deviceId: string): Promise<void>;
}

export function monitoring(c: ConfigContext, members: Membership): Monitoring {
  const { ctx, live, liveness } = c;
  const reach = new Reach(Date.now());
  const stale = new StaleClaims();

  /** Key holder of each member, with the VPNs and current epochs it should hold. */
  async function holders(): Promise<Map<string, Held[]>> {
    const out = new Map<string, Held[]>();
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

  /**
   * What one holder should hold, read for it alone: a will from each of
   * 10,000 devices going dark at once (a power cut) read every member
   * 10,000 times before. A relay holds its ports' terminals: the full read
   * (relays are few).
   */
  async function heldBy(holder: DeviceRow): Promise<Held[] | undefined> {
    if (holder.kind === 'relay') return (await holders()).get(holder.id);
    if ((await ctx.store.getNetworkInfo(holder.id))?.relayId) return undefined; // its relay holds its keys
    const vpns = [];
    for (const m of await ctx.store.membershipsOf(holder.id)) vpns.push({ id: m.vpnId, epoch: (await ctx.store.currentSessionKey(m.vpnId))?.epoch ?? 0 });
    return vpns.length ? [{ id: holder.id, vpns }] : undefined;
  }

  async function holderOf(member: string): Promise<string> {
    return (await ctx.store.getNetworkInfo(member))?.relayId ?? member;
  }

  async function onTransition(t: Transition | null): Promise<void> {
    if (!t) return;
    if (t.to === 'EVICTED') return evict(t.member, `${t.missed} polls missed`);
    // The count goes to the store with the mark, for whoever polls next.
    await ctx.store.setCommunicating(t.member, t.to === 'ACTIVE', Date.now(), t.to === 'MISSING' ? t.missed : 0);
    if (t.to === 'MISSING') ctx.log('info', `config: ${t.member} missed a poll (${t.missed}/${live.evictAfter}): not communicating`);
    else ctx.log('info', `config: ${t.member} answers again: communicating`);
  }

  /** S401 to one holder: the last poll each member was sent is judged, then the next goes out. */
  async function pollHolder(holder: string, held: Held[]): Promise<void> {
    const sentAt = Date.now();
    for (const m of held) await onTransition(liveness.due(m.id));
    const still = held.filter((m) => liveness.state(m.id) !== undefined && liveness.state(m.id) !== 'EVICTED');
    if (still.length === 0) return;
    try {
      await c.peer().sendChannel(holder, { type: 'poll', body: { members: still } }); // resolves on the broker's PUBACK
    } catch (e) {
      if (!isKagiError(e, 'key')) {
        for (const m of still) liveness.undelivered(m.id); // the broker never took it
        throw e;
      }
      // No channel (never authenticated since the tables were made): it can
      // answer no poll of ours, so the poll counts as missed (where it may).
      ctx.log('debug', `config: cannot poll ${holder}: ${e.message}`);
    }
    let silent = 0;
    for (const m of still) {
      if (reach.counts(holder, liveness.missed(m.id) > 0, sentAt)) liveness.delivered(m.id, sentAt);
      else (liveness.undelivered(m.id), silent++);
    }
    if (silent > 0) ctx.log('debug', `config: ${holder} is not known on this broker (${ctx.brokerUrl}): its poll counts nothing`);
  }

  // While our own link is down no poll goes out, so none may count as missed.
  let wasDown = false;
  async function pollRound(): Promise<void> {
    if (!c.leading()) return;
    if (!c.connected()) return void (wasDown = true);
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
        if (!c.leading()) return;
        const wait = t0 + i * POLL_SLICE_MS - Date.now();
        if (wait >= 1) await new Promise((r) => setTimeout(r, wait));
        await Promise.all(all.slice(i * per, (i + 1) * per).map(([holder, held]) => pollHolder(holder, held)));
      }
      if (all.length > 0) ctx.metrics.observe('kagi_poll_round_seconds', (Date.now() - t0) / 1000);
    } catch (e) {
      if (!c.connected()) wasDown = true; // lost the link mid-round
      throw e;
    }
  }

  /** Leave steps for a member that stopped answering. */
  async function evict(member: string, why: string): Promise<void> {
    ctx.metrics.count('kagi_evictions_total');
    return members.removeMember(member, null, 'evicted', why);
  }

  /**
   * What a holder says it holds (S402, S403, leave): only members it really
   * holds count, each once; a message listing more than
   * MAX_MEMBERS_PER_MESSAGE is refused whole, and at most
   * MAX_VPNS_PER_MEMBER VPNs of each are looked at (stale-claims.ts): the
   * work is bounded whatever the message lists.
   */
  async function claimed(holder: string, b: Body): Promise<{ member: string; vpns: string[] }[]> {
    const out = new Map<string, string[]>();
    const seen = new Set<string>(); // a name repeated costs one store read, held or not
    for (const x of list(b, 'members', MAX_MEMBERS_PER_MESSAGE)) {
      const m = asBody(x);
      const member = str(m, 'member', 64);
      if (seen.has(member)) continue;
      seen.add(member);
      if ((await holderOf(member)) !== holder) continue;
      out.set(member, [...new Set(list(m, 'vpns').slice(0, MAX_VPNS_PER_MEMBER).map((y) => str(asBody(y), 'id', 64)))]);
    }
    return [...out].map(([member, vpns]) => ({ member, vpns }));
  }

  /** S402 / S403: the holder vouches for its members; stale keys get a notice (once, bounded: stale-claims.ts). */
  async function vouch(holder: string, b: Body): Promise<void> {
    const now = Date.now();
    stale.startMessage();
    for (const cl of await claimed(holder, b)) {
      const mine = new Set((await ctx.store.membershipsOf(cl.member)).map((m) => m.vpnId));
      if (mine.size > 0) await onTransition(liveness.vouched(cl.member, now));
      // Keys for a VPN it is no longer in (evicted while frozen): tell it.
      for (const vpn of stale.toTell(cl.member, cl.vpns, mine)) {
        const reason = (await ctx.store.getVpn(vpn)) ? 'evicted' : 'deleted';
        void members.tell(vpn, cl.member, holder === cl.member ? null : holder, { op: 'left', reason }, `out (${reason})`);
      }
    }
  }

  async function onChannel(m: ChannelMessage): Promise<Reply | undefined> {
    const b = asBody(m.body);
    const holder = m.env.from;
    reach.saw(holder); // it authenticated, through our broker
    if (m.env.type === 'poll.reply') await vouch(holder, b);
    else if (m.env.type === 'continue') {
      ctx.log('info', `config: continue from ${holder}`);
      await vouch(holder, b);
    } else if (m.env.type === 'leave') {
      for (const cl of await claimed(holder, b)) {
        // Gone by choice: its grants are not "made since it joined" (grant-notices.ts),
        // or its next start would be told to join again right after it joined.
        // Forgotten before the removal, whose reconcile looks for grants owed:
        // the other way round, that look told the leaving device "granted",
        // which its next start heard after joining.
        if (cl.member === holder) await ctx.store.clearJoinedAs(holder);
        await members.removeMember(cl.member, cl.vpns, 'left', `${holder} is shutting down`);
      }
    }
    return undefined;
  }

  /** The broker's will says a holder's connection died: poll it now (counts like any poll). */
  async function onState(topic: string, payload: Uint8Array): Promise<void> {
    const said = parseState(topic, payload);
    if (!said) return;
    const { deviceId, state } = said;
    reach.saw(deviceId); // this broker carries its state: it is (or was) connected here
    if (!c.leading()) return; // every instance hears it; the lease holder records it
    // Recorded only for a device of ours (not retained leftovers on a
    // shared broker): the write says which, so coming online, every
    // device at every connect, costs no read of the device.
    if (!(await ctx.store.setPresence(deviceId, state === 'online', Date.now(), ctx.brokerUrl)) || state !== 'offline') return;
    const device = await ctx.store.getDevice(deviceId);
    if (!device) return;
    const held = await heldBy(device);
    if (!held) return;
    ctx.log('info', `config: ${deviceId} went offline (will); polling it now`);
    await pollHolder(deviceId, held);
  }

  // Whoever takes the duty (at start, or from an instance that died)
  // resumes the counts the last holder left in the store; each member's
  // first poll from here is judged only at the one after it. A mark
  // without a count (from before counts were kept) starts over, as it did.
  async function lead(): Promise<void> {
    liveness.retain(new Set());
    const missed = await ctx.store.missedPolls();
    for (const [id, n] of missed) liveness.resume(id, n);
    for (const id of await ctx.store.notCommunicating()) if (!missed.has(id)) await ctx.store.setCommunicating(id, true, Date.now());
    reach.restart(await ctx.store.presentOn(ctx.brokerUrl), Date.now());
    const resumed = missed.size > 0 ? `; ${missed.size} members resume their missed polls` : '';
    ctx.log('info', `config: holding the lease: polling members${ctx.instance ? ` (instance ${ctx.instance.name})` : ''}${resumed}`);
  }

  /**
   * Only the lease holder counts polls, and only for members it counts
   * (a device in no VPN has no entry to make). With several instances a
   * request handled by another one does not reach us; its join does
   * (liveness.rejoined).
   */
  async function alive(deviceId: string): Promise<void> {
    if (!c.leading() || liveness.state(deviceId) === undefined) return;
    await onTransition(liveness.vouched(deviceId, Date.now()));
  }

  return { pollRound, onChannel, onState, lead, connected: (id) => reach.saw(id), alive };
}
