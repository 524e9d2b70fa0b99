/**
 * Key server (patent 3): per-VPN session keys (3b) and their distribution
 * to members (3a).
 *
 *  issue     at join: keys.update on the join's own keys channel, which the
 *            joining holder (the member, or its relay for a port) exported
 *            from its join request and the auth server handed on (decision
 *            134); for a join that did not ask for that, HPKE-sealed
 *            keys.deliver to the holder, its channel that delivery's export.
 *            Either way every join renews the holder's keys channel.
 *  rekey     a new epoch with a fresh random key, wrapped for each
 *            communicating member under its keys channel (one AEAD per
 *            member, not one HPKE seal): periodically (per VPN period), when
 *            an operator asks (`kagi vpn rekey`), and at once when a member
 *            leaves (S404: the leaver cannot read what is sent after it).
 *  converge  a communicating member whose key id lags the current epoch
 *            (missed a rekey, or the control plane died mid-rekey) gets the
 *            current epoch; a member that sees a newer epoch fetches it.
 * A member's key id in the VPN table moves only when it acknowledges.
 */
import { asBody, bytes, list, num, str, type Body } from '../../protocol/body.js';
import { asRequester, type ChannelKeys } from '../../protocol/channel.js';
import { wipe } from '../../protocol/bytes.js';
import { replaceChannel } from '../store/windows.js';
import type { ChannelMessage, Peer, Reply } from '../../protocol/peer.js';
import { topics } from '../../protocol/topics.js';
import { GROUP_KEY_LENGTH } from '../../protocol/vpn-frame.js';
import { KeyedSerial } from '../../protocol/replay.js';
import { every, startService, type RunningService, type ServiceContext } from '../service-host.js';
import { ConflictError, type KeyHolderRow, type SessionKeyRow } from '../store/store.js';
import { CONNECT_ERAS_KEPT, ERA_IDLE_SWEEP_S } from '../store/windows.js';

export interface KeysOptions {
  /** Default periodic rekey period (ms) for VPNs without their own; 0 = none. */
  rekeyPeriodMs?: number;
  /** How often periodic rekeys, operator requests and convergence are checked (ms). */
  tickMs?: number;
}

/** Where a member's keys go: itself, or its relay for a port. */
interface Holder {
  member: string;
  holder: string;
  port?: string;
}

/** Where a member's keys go, from its network info: its relay's port when it sits behind one. */
function holderFrom(member: string, relayId: string | null, relayPort: string | null): Holder {
  return relayId && relayPort ? { member, holder: relayId, port: relayPort } : { member, holder: member };
}

/** A lagging member is pushed the current epoch at most this often (ms). */
const PUSH_EVERY_MS = 5_000;
/** How often the lease holder sweeps replay windows (ms). */
const SWEEP_EVERY_MS = 60_000;
/** The reason the config server gives when a removal owes its VPN a rekey (membership.ts). */
export const LEAVE_REKEY = 'a member left';
/** Rekey reasons as metric labels (a bounded set). */
const REKEY_WHY = new Set(['periodic', 'requested', LEAVE_REKEY, 'asked']);

/**
 * Two writes issued together (one group commit), each run to its end
 * before a failure of either is thrown: the channel keys one of them
 * copies at its commit are wiped only after it, never under it.
 */
async function settled(a: Promise<unknown>, b: Promise<unknown>): Promise<void> {
  for (const r of await Promise.allSettled([a, b])) if (r.status === 'rejected') throw r.reason;
}

export async function startKeys(ctx: ServiceContext, o: KeysOptions = {}) {
  let peer!: Peer;

  /** The VPN's current key, made (epoch 1) on first use. */
  async function currentKey(vpnId: string): Promise<SessionKeyRow> {
    const have = await ctx.store.currentSessionKey(vpnId);
    if (have) return have;
    try {
      await ctx.store.putSessionKey({ vpnId, epoch: 1, key: ctx.crypto.randomBytes(GROUP_KEY_LENGTH), createdAt: Date.now() });
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e; // another join made it first
    }
    return (await ctx.store.currentSessionKey(vpnId))!;
  }

  async function holderOf(member: string): Promise<Holder> {
    const info = await ctx.store.getNetworkInfo(member);
    return holderFrom(member, info?.relayId ?? null, info?.relayPort ?? null);
  }

  async function vpnKeys(vpnIds: string[]): Promise<Body[]> {
    const out = [];
    for (const id of vpnIds) {
      const v = await ctx.store.getVpn(id);
      if (!v) continue;
      const k = await currentKey(id);
      out.push({ id, epoch: k.epoch, key: k.key, protocol: v.protocol, port: v.port });
    }
    return out;
  }

  /**
   * A holder acknowledged keys: move the member's key id in the VPN table
   * (up only, one write per VPN). `known`: the holder we sent to, when the
   * acknowledgement answers our own delivery, so nothing is read again.
   */
  async function record(holder: string, ack: Body, known?: Holder): Promise<number> {
    const member = typeof ack.member === 'string' ? ack.member : holder;
    const h = known?.member === member ? known : await holderOf(member);
    if (h.holder !== holder) return 0;
    let moved = 0;
    for (const x of list(ack, 'vpns')) {
      const v = asBody(x);
      if (await ctx.store.raiseKeyId(str(v, 'id', 64), member, num(v, 'epoch'))) moved++;
    }
    return moved;
  }

  // Deliveries to one holder (a relay's ports joining together) go one at
  // a time, so the channel this instance keeps is the holder's latest.
  const deliveries = new KeyedSerial();

  /**
   * A join's keys for its holder (itself, or its relay for `port`): on the
   * join's own keys channel when it came (`channel`, decision 134), else
   * HPKE-sealed. Either way the holder takes the delivery's keys channel
   * before acknowledging, and we keep it once the acknowledgement is in.
   */
  function issue(h: Holder, vpnIds: string[], channel?: { up: Uint8Array; down: Uint8Array }): Promise<Body> {
    return deliveries.run(h.holder, async () => {
      const keys = channel && asRequester(channel);
      try {
        const device = await ctx.store.getDevice(h.holder);
        if (!device || device.revoked) return { ok: false, reason: `no device ${h.holder}` };
        const vpns = await vpnKeys(vpnIds);
        const body = { vpns, ...(h.port !== undefined ? { port: h.port, member: h.member } : {}) };
        // The key ids the acknowledgement moves are written with the channel it keeps: one commit.
        const acked = (ack: Body) => record(h.holder, ack, h);
        const ack = keys ? await onJoinChannel(h, body, keys, acked) : await sealed(h, device.publicKey, body, acked);
        if (!ack) return { ok: false, reason: `${h.holder} did not acknowledge keys` };
        const where = h.port !== undefined ? `${h.holder} (port ${h.port}, for ${h.member})` : h.member;
        // At debug: a delivery is a join's, which the config server logs with
        // the epochs (two info lines per re-join were 2% of kagi up in a storm).
        ctx.log('debug', `keys: ${where} holds ${vpns.map((v) => `${String(v.id)}#${String(v.epoch)}`).join(', ')}`);
        return { ok: true, epochs: Object.fromEntries(vpns.map((v) => [v.id, v.epoch])) };
      } finally {
        if (keys) wipe(keys.send, keys.recv);
      }
    });
  }

  /**
   * The keys as one keys.update under the join's own keys channel: one AEAD
   * seal here and one open at the holder, where an HPKE delivery cost an
   * ephemeral key and two X25519. The holder takes the channel at the first
   * message under it. Its acknowledgement (once `acked`, written beside
   * the channel, is done), or undefined.
   */
  async function onJoinChannel(h: Holder, body: Body, keys: ChannelKeys, acked: (ack: Body) => Promise<unknown>): Promise<Body | undefined> {
    const ack = await peer.channelRequest({ to: h.holder, type: 'keys.update', body, timeoutMs: ctx.timeoutMs, keys });
    if (ack.type !== 'keys.updated') return undefined;
    const b = asBody(ack.body);
    // Compare-and-set on that message's seq, as for a sealed delivery's.
    await settled(replaceChannel(ctx.store, ctx.crypto, 'keys', h.holder, keys, ack.seq), acked(b));
    return b;
  }

  /**
   * The keys HPKE-sealed to the holder (`pkR`), for a join that did not ask
   * for them on its channel (an earlier agent); the keys channel is the
   * delivery's own export. Its acknowledgement (once `acked` is done, as
   * onJoinChannel's), or undefined.
   */
  async function sealed(h: Holder, pkR: Uint8Array, body: Body, acked: (ack: Body) => Promise<unknown>): Promise<Body | undefined> {
    const ack = await peer.request({ to: h.holder, pkR, topic: topics.inbox(h.holder), type: 'keys.deliver', body, timeoutMs: ctx.timeoutMs });
    try {
      if (ack.type !== 'keys.ack') return undefined;
      const keys = asRequester(ack.secrets.channelKeys());
      const b = asBody(ack.body);
      // Compare-and-set on the delivery's seq (one shared sequence across
      // instances): the holder keeps the highest-seq delivery's channel too.
      // The replaced channel's window goes with it (nothing on it opens now).
      try {
        await settled(replaceChannel(ctx.store, ctx.crypto, 'keys', h.holder, keys, ack.seq), acked(b));
      } finally {
        wipe(keys.send, keys.recv);
      }
      return b;
    } finally {
      ack.secrets.destroy();
    }
  }

  /** The current epoch of `vpnId` (or `keys`, read once per rekey) to one member, under its holder's keys channel. */
  async function update(h: Holder, vpnId: string, keys?: Body[]): Promise<boolean> {
    const vpns = keys ?? (await vpnKeys([vpnId]));
    const body = { vpns, ...(h.port !== undefined ? { port: h.port, member: h.member } : {}) };
    const ack = await peer.channelRequest({ to: h.holder, type: 'keys.update', body, timeoutMs: ctx.timeoutMs });
    if (ack.type !== 'keys.updated') return false;
    await record(h.holder, asBody(ack.body), h);
    return true;
  }

  const withKeyId = (m: KeyHolderRow) => ({ ...holderFrom(m.deviceId, m.relayId, m.relayPort), keyId: m.keyId });

  /** Members that answer polls (the config server marks the others), with their key ids and holders: two reads. */
  async function communicating(vpnId: string): Promise<(Holder & { keyId: number })[]> {
    const silent = await ctx.store.notCommunicating();
    return (await ctx.store.keyHolders(vpnId)).filter((m) => !silent.has(m.deviceId)).map(withKeyId);
  }

  // Rekeys of one VPN run one at a time, in order.
  const rekeys = new KeyedSerial();

  /**
   * A new epoch for every communicating member (the others converge when
   * back). `owed`: only if the VPN still owes one (a removal or a request
   * marked it, and no rekey has paid it since), so the config server's
   * prompt after a leave and this server's own tick rekey it once.
   */
  function rekey(vpnId: string, why: string, o: { owed?: boolean } = {}): Promise<{ epoch: number; sent: number; failed: number }> {
    return rekeys.run(vpnId, async () => {
      const v = await ctx.store.getVpn(vpnId);
      if (!v) return { epoch: 0, sent: 0, failed: 0 };
      const old = await ctx.store.currentSessionKey(vpnId);
      if (o.owed && !(v.rekeyRequestedAt > 0)) return { epoch: old?.epoch ?? 0, sent: 0, failed: 0 };
      const epoch = (old?.epoch ?? 0) + 1;
      const startedAt = performance.now();
      await ctx.store.putSessionKey({ vpnId, epoch, key: ctx.crypto.randomBytes(GROUP_KEY_LENGTH), createdAt: Date.now() });
      await ctx.store.setRekeyRequest(vpnId, 0);
      const members = await communicating(vpnId);
      ctx.log('info', `keys: rekeying ${vpnId} to epoch ${epoch} (${why}) for ${members.length} communicating members`);
      ctx.metrics.count('kagi_rekeys_total', { why: REKEY_WHY.has(why) ? why : 'other' });
      const keys = await vpnKeys([vpnId]); // the same wrapped key for everyone: read it once
      const results = await Promise.allSettled(members.map((h) => update(h, vpnId, keys)));
      const failed = results.filter((r) => r.status === 'rejected' || !r.value).length;
      ctx.metrics.observe('kagi_rekey_seconds', (performance.now() - startedAt) / 1000);
      ctx.log('info', `keys: rekeyed ${vpnId} to epoch ${epoch}: ${members.length - failed}/${members.length} members acknowledged`);
      return { epoch, sent: members.length, failed };
    });
  }

  /** Periodic rekeys, operator requests and lagging members, from the tables. */
  const pushed = new Map<string, number>();
  let swept = 0;
  async function tick(): Promise<void> {
    if (!leading()) return; // another instance has the duty
    const now = Date.now();
    if (now - swept >= SWEEP_EVERY_MS) await sweep((swept = now));
    for (const v of await ctx.store.listVpns()) {
      const current = await ctx.store.currentSessionKey(v.id);
      if (!current) continue; // no member ever joined: nothing to rekey
      const period = v.rekeyPeriodMs || o.rekeyPeriodMs || 0;
      if (v.rekeyRequestedAt > 0) await rekey(v.id, 'requested', { owed: true });
      else if (period > 0 && now - current.createdAt >= period) await rekey(v.id, 'periodic');
      else await converge(v.id, current.epoch, now);
    }
  }

  /**
   * Replay windows of the whole store (every service's and the broker's;
   * servers/store/windows.ts says which go and why that is safe), by the
   * key server's lease holder, like its other duties on the tables.
   */
  async function sweep(now: number): Promise<void> {
    const n = await ctx.store.sweepSeqWindows({ idleBefore: Math.floor(now / 1000) - ERA_IDLE_SWEEP_S, connectEras: CONNECT_ERAS_KEPT });
    if (n.idle + n.connect > 0) ctx.log('debug', `keys: swept ${n.idle} idle era windows, ${n.connect} CONNECT era windows beyond ${CONNECT_ERAS_KEPT} per client`);
  }

  /**
   * Push the current epoch to communicating members behind it. Not on the
   * rekey chain: a member slow to answer must not hold up the next rekey,
   * and an update that lands after a newer epoch is ignored by the member
   * (it only moves forward) and by record().
   */
  async function converge(vpnId: string, epoch: number, now: number): Promise<void> {
    // One read: the store leaves out the silent, those at the epoch, and
    // key id 0 (mid-join, before its keys went out: the join delivers them).
    for (const m of (await ctx.store.keyHolders(vpnId, epoch)).map(withKeyId)) {
      const key = `${vpnId}/${m.member}`;
      if (now - (pushed.get(key) ?? -Infinity) < PUSH_EVERY_MS) continue;
      pushed.set(key, now);
      void update(m, vpnId)
        .then((ok) => ok && ctx.log('info', `keys: ${m.member} caught up with ${vpnId}#${epoch}`))
        .catch((e) => ctx.log('debug', `keys: ${m.member} did not take ${vpnId}#${epoch}: ${(e as Error).message}`));
    }
  }

  /** A service request from the config server, over the broker or by a call (startService's serve). */
  async function serve(from: string, body: unknown): Promise<Body | undefined> {
    if (from !== 'config') return undefined;
    const b = asBody(body);
    try {
      const op = str(b, 'op', 32);
      if (op === 'keys.rekey') {
        const vpn = str(b, 'vpn', 64);
        const why = typeof b.why === 'string' ? b.why : 'asked';
        // Rekeys are the lease holder's (one at a time per VPN, in order):
        // another instance leaves a request in the table for its next tick.
        // Not for a leave: its removal marked the VPN in the same transaction,
        // and a mark made now could land after the holder's tick paid that
        // one, owing a second rekey for one leave (scale-out.test.ts saw it).
        if (!leading()) return { ok: why === LEAVE_REKEY || (await ctx.store.setRekeyRequest(vpn, Date.now())), queued: true };
        // A leave's removal marked the VPN as owing a rekey: pay that, once.
        const r = await rekey(vpn, why, { owed: why === LEAVE_REKEY });
        return { ok: true, ...r };
      }
      if (op !== 'keys.issue') return { ok: false, reason: 'unknown op' };
      const deviceId = str(b, 'deviceId', 64);
      const relay = b.deliverTo === undefined ? undefined : str(b, 'deliverTo', 64);
      const h: Holder = relay ? { member: deviceId, holder: relay, port: str(b, 'port', 64) } : { member: deviceId, holder: deviceId };
      const channel = b.channel === undefined ? undefined : asBody(b.channel);
      return await issue(h, list(b, 'vpns').map(String), channel && { up: bytes(channel, 'up', 32), down: bytes(channel, 'down', 32) });
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
  }

  /** From holders: fetch the current epoch; acknowledgements of updates. */
  async function onChannel(m: ChannelMessage): Promise<Reply | undefined> {
    const holder = m.env.from;
    const b = asBody(m.body);
    if (m.env.type === 'keys.updated') {
      await record(holder, b);
      return undefined;
    }
    if (m.env.type !== 'keys.fetch') return undefined;
    const member = str(b, 'member', 64);
    const vpnId = str(b, 'vpn', 64);
    const h = await holderOf(member);
    const isMember = (await ctx.store.membershipsOf(member)).some((r) => r.vpnId === vpnId);
    if (h.holder !== holder || !isMember) {
      ctx.log('warn', `keys: refused a fetch of ${vpnId} by ${holder} for ${member} (not a member it holds)`);
      return undefined;
    }
    return { type: 'keys.update', body: { vpns: await vpnKeys([vpnId]), ...(h.port !== undefined ? { port: h.port, member } : {}) } };
  }

  let started: RunningService | undefined; // set once connected; requests may come sooner
  const leading = () => started?.lease.held === true;
  const running = (started = await startService('keys', ctx, {
    serve,
    onChannel,
    // Header checks before any key lookup or crypto (Peer.takesRequest): the config server asks, holders acknowledge or fetch.
    takesRequest: (env) => env.from === 'config' && env.type === 'service.request',
    takesChannel: (env) => env.type === 'keys.updated' || env.type === 'keys.fetch',
  }, (p) => (peer = p)));
  const timer = every(o.tickMs ?? 1_000, tick, (e) => ctx.log('warn', `keys: ${e.message}`));
  return {
    ...running,
    rekey,
    close: async () => {
      clearInterval(timer);
      await running.close();
    },
  };
}
