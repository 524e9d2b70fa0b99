/**
 * The config server's front door (1a, 1b), in the patent's order:
 *   config.request → auth verifies (2a) → config sent (S104)
 *   join.request → auth checks the user (2b) → network devices programmed →
 *   key server distributes keys (3a) and the terminal acknowledges →
 *   join.response.
 * Requests arrive sealed to the auth server and are forwarded unopened; a
 * refusal goes back sealed under the request's reply key when the auth
 * server could open it, and not at all otherwise (decision 7). Every
 * authentication of the device's own renews its config channel.
 */
import type { Envelope } from '../../protocol/envelope.js';
import { asBody, bytes, list, num, str, type Body } from '../../protocol/body.js';
import type { Reply } from '../../protocol/peer.js';
import { asReceiver } from '../../protocol/channel.js';
import { replaceChannel } from '../store/windows.js';
import { toHex } from '../../protocol/bytes.js';
import { Answers } from './answers.js';
import { publicKeys } from '../identity.js';
import type { ConfigContext } from './context.js';
import type { Membership } from './membership.js';
import { Admission, ADMITTED_BESIDE_PASSWORDS, admittedBeside } from './admission.js';

/** Requests of one sender being forwarded to the auth server at once; more are dropped. */
export const MAX_FORWARDS_PER_SENDER = 16;

/** Requests waiting for an admission place; more are dropped as busy (the devices retry). */
export const MAX_WAITING = 100_000;

/** Sends the answer to one device request (sealed under its reply key) and keeps it for a copy of that request. */
type Answer = (to: string, reqId: number, key: Uint8Array, r: Reply) => Promise<void>;

export interface JoinPath {
  /** A request sealed to auth that reached the config server (Peer's onForeign). */
  handle(env: Envelope, raw: Uint8Array): Promise<void>;
  /** Forget answers older than a request stays acceptable (answers.ts). */
  sweep(): void;
}

/**
 * `alive`: the device just proved itself (its credential, checked by the
 * auth server): liveness counts that as an answer (monitoring.ts).
 */
export function joinPath(c: ConfigContext, members: Membership, alive: (deviceId: string) => Promise<void>): JoinPath {
  const { ctx, o } = c;
  const answers = new Answers();

  /** The device's own authentication renews its config channel (it does the same). */
  async function renewChannel(deviceId: string, v: Body): Promise<void> {
    const keys = asReceiver({ up: bytes(v, 'channelUp', 32), down: bytes(v, 'channelDown', 32) });
    await replaceChannel(ctx.store, ctx.crypto, 'config', deviceId, keys);
  }

  async function refuseDevice(v: Body, answer: Answer): Promise<void> {
    if (!(v.replyKey instanceof Uint8Array)) return; // nothing to seal a refusal with
    // A stale request's refusal carries the auth server's clock (decision 61);
    // throttled and busy ones the seconds to wait before asking again.
    const clock = typeof v.clock === 'number' ? { clock: v.clock } : {};
    const retry = typeof v.retryAfter === 'number' ? { retryAfter: v.retryAfter } : {};
    // The code lets an agent act on it (a refused ticket: use the password).
    const code = typeof v.code === 'string' ? { code: v.code } : {};
    // A join auth accepted but we could not finish still hands over the
    // ticket auth rotated: the one the device holds is retired now.
    const ticket = v.ticket instanceof Uint8Array ? { ticket: v.ticket } : {};
    await answer(str(v, 'replyTo', 64), num(v, 'reqId'), bytes(v, 'replyKey'), { type: 'error', body: { reason: v.reason, ...code, ...clock, ...retry, ...ticket } });
  }

  async function configure(v: Body, answer: Answer): Promise<void> {
    const deviceId = str(v, 'deviceId', 64);
    const replyTo = str(v, 'replyTo', 64);
    const via = v.via ? asBody(v.via) : null;
    // 1f: where the device is: its broker address, or which relay port.
    const address = via ? null : (o.addressOf?.(deviceId) ?? null);
    const stored = await ctx.store.getConfig(deviceId);
    const config = stored?.body ?? { deviceId, kind: v.kind, pollIntervalMs: o.pollIntervalMs ?? 30_000, services: publicKeys(ctx.keys) };
    // Independent writes, issued together: one group commit and one sync
    // between them and the answer, not one each in turn (decision 135).
    await Promise.all([
      alive(deviceId),
      ctx.store.putNetworkInfo({ deviceId, address, relayId: via ? str(via, 'relay', 64) : null, relayPort: via ? str(via, 'port', 64) : null, updatedAt: Date.now() }),
      stored ? undefined : ctx.store.putConfig({ deviceId, body: config }),
      via ? undefined : renewChannel(deviceId, v),
    ]);
    const reply: Reply = { type: 'config.response', body: { config, liveness: c.wire } };
    await answer(replyTo, num(v, 'reqId'), bytes(v, 'replyKey'), reply);
    ctx.log('info', `config: sent config to ${deviceId}`);
  }

  /**
   * `startedAt`: when the join request reached us (performance.now()), for
   * kagi_join_seconds. `leave`: gives back the admission place, once the
   * keys go out (the rest waits on the device).
   */
  async function join(v: Body, startedAt: number, answer: Answer, leave: () => void): Promise<void> {
    const deviceId = str(v, 'deviceId', 64);
    const replyTo = str(v, 'replyTo', 64);
    const userId = str(v, 'user', 64);
    const vpns = list(v, 'vpns').map((x) => asBody(x));
    const via = v.via ? asBody(v.via) : null;
    // S302–S303: the address the broker sees, or (behind an external
    // broker, which does not tell us) the one the device reported.
    const reported = Array.isArray(v.addresses) ? v.addresses.filter((a): a is string => typeof a === 'string' && a.length <= 64)[0] : undefined;
    const address = via ? null : (o.addressOf?.(deviceId) ?? reported ?? (await ctx.store.getNetworkInfo(deviceId))?.address ?? null);
    const networkId = via ? `${str(via, 'relay', 64)}:${str(via, 'port', 64)}` : (address ?? 'broker');
    // A member keeps its key id until its acknowledgement moves it (keys.ts).
    const keyIds = new Map((await ctx.store.membershipsOf(deviceId)).map((m) => [m.vpnId, m.keyId]));
    // Independent writes, issued together (decision 135): that it is alive,
    // where it is, its memberships; the reconcile reads them after.
    await Promise.all([
      alive(deviceId),
      via ? undefined : ctx.store.putNetworkInfo({ deviceId, address, relayId: null, relayPort: null, updatedAt: Date.now() }),
      ...vpns.map((x) => {
        const vpnId = str(x, 'id', 64);
        return ctx.store.putMember({ vpnId, deviceId, userId, keyId: keyIds.get(vpnId) ?? 0, networkId });
      }),
    ]);
    await members.reconcile([deviceId]); // program the network devices before keys go out (its rows: a patch)
    // Keys for a plaintext terminal go to its relay, for its port. From
    // here the join waits on the device's acknowledgement: the place is
    // given to the next request rather than held through a round trip.
    leave();
    // The join's own keys channel, when it asked for its keys on it (decision 134).
    const channel = v.keysUp instanceof Uint8Array ? { channel: { up: bytes(v, 'keysUp', 32), down: bytes(v, 'keysDown', 32) } } : {};
    const issued = await c.ask('keys', { op: 'keys.issue', deviceId, vpns: vpns.map((x) => x.id), ...(via ? { deliverTo: via.relay, port: via.port } : {}), ...channel });
    if (!issued.ok) {
      ctx.metrics.count('kagi_refusals_total', { reason: 'keys' });
      const reason = `key distribution failed: ${String(issued.reason)}`;
      ctx.log('warn', `config: ${deviceId} (${userId}) refused: ${reason}`);
      await ctx.store.noteRefusal(deviceId, { at: Date.now(), code: 'keys', reason, user: userId }).catch((e: Error) => ctx.log('warn', `config: recording a refusal of ${deviceId}: ${e.message}`));
      return refuseDevice({ ...v, code: 'keys', reason }, answer);
    }
    const epochs = asBody(issued.epochs);
    const out = vpns.map((x) => {
      const id = str(x, 'id', 64);
      const planned = members.planned(id);
      return { id, protocol: x.protocol, port: x.port, epoch: epochs[id], rate: planned.rate, cut: planned.cut };
    });
    c.liveness.forget(deviceId); // a fresh start: ACTIVE, nothing missed
    // Independent writes, issued together: one group commit and one sync
    // before the answer, not one each in turn (decision 135).
    await Promise.all([
      ...vpns.map((x) => ctx.store.putMember({ vpnId: str(x, 'id', 64), deviceId, userId, keyId: num(epochs, str(x, 'id', 64)), networkId })),
      ctx.store.setCommunicating(deviceId, true, Date.now()),
      // So grants made later reach it (grant-notices.ts); a plaintext terminal asks through its relay.
      via ? undefined : ctx.store.setJoinedAs(deviceId, userId, Date.now()),
      via ? undefined : renewChannel(deviceId, v),
    ]);
    await answer(replyTo, num(v, 'reqId'), bytes(v, 'replyKey'), { type: 'join.response', body: { user: userId, vpns: out, liveness: c.wire, ...(v.ticket instanceof Uint8Array ? { ticket: v.ticket } : {}) } });
    ctx.log('info', `config: ${deviceId} (${userId}) joined ${out.map((x) => `${x.id}#${String(x.epoch)}`).join(', ')}${via ? ` (keys to ${String(via.relay)}, port ${String(via.port)})` : ''}`);
    ctx.metrics.count('kagi_joins_total');
    ctx.metrics.observe('kagi_join_seconds', (performance.now() - startedAt) / 1000);
  }

  /**
   * Forwarding costs an HPKE seal here and an open at the auth server, so
   * before it: the type, a sender that is a registered device that speaks
   * for itself (a store read), and at most MAX_FORWARDS_PER_SENDER of its
   * requests at the auth server at once (an agent has one; a relay one per
   * terminal joining through it). What fails is dropped and counted; the
   * sender's own retry is the answer (decision 7).
   */
  const inFlight = new Map<string, number>();
  /** HPKE encs of the requests in line or under way (each is one request's own). */
  const underWay = new Set<string>();
  const admission = new Admission(o.admitted ?? (ctx.local?.has('auth') ? ADMITTED_BESIDE_PASSWORDS : admittedBeside()), MAX_WAITING);
  ctx.metrics.gauge('kagi_requests_waiting', () => admission.queued);
  const drop = (reason: string) => ctx.metrics.count('kagi_messages_dropped_total', { service: 'config', reason });
  async function handle(env: Envelope, raw: Uint8Array): Promise<void> {
    if (env.to !== 'auth' || (env.type !== 'config.request' && env.type !== 'join.request')) return drop('type');
    // A copy of a request we answered: the same answer again (answers.ts),
    // before anything else is spent on it.
    const enc = toHex(env.enc!);
    const again = answers.find(enc, env.from);
    if (again) {
      ctx.log('debug', `config: ${env.type} from ${env.from} again: its answer sent again`);
      return c.peer().publishReply(again.to, again.bytes);
    }
    // A copy of a request still in line or under way (its sender waited
    // long and sent the same bytes again, decision 130): the original's
    // answer answers it, so it costs nothing here.
    if (underWay.has(enc)) return drop('copy');
    const answer: Answer = async (to, reqId, key, r) => answers.keep(enc, { from: env.from, to, bytes: await c.peer().sendReply(to, reqId, key, r) });
    const n = inFlight.get(env.from) ?? 0;
    if (n >= MAX_FORWARDS_PER_SENDER) return drop('busy');
    inFlight.set(env.from, n + 1);
    underWay.add(enc);
    const startedAt = performance.now(); // kagi_join_seconds counts the wait for a place too
    let leave: (() => void) | null = null;
    try {
      leave = await admission.enter();
      if (!leave) return drop('busy');
      const sender = await ctx.store.getDevice(env.from);
      if (!sender || sender.revoked || sender.kind === 'plaintext') return drop('unknown-sender');
      const op = env.type === 'config.request' ? 'device.auth' : 'user.join';
      // A password check gives the place back while it waits on the hash
      // pool (the pool refuses busy past its own bound), where auth runs here.
      const verdict = await c.ask('auth', { op, envelope: raw }, leave);
      if (!verdict.ok) return refuseDevice(verdict, answer);
      // A device coming back (a restart, a site's power back) asks before
      // it holds keys to answer polls with: its request is its answer
      // (`alive`, with the first writes of either), so the polls it missed
      // while down do not evict it mid-way back.
      return await (op === 'device.auth' ? configure(verdict, answer) : join(verdict, startedAt, answer, leave));
    } finally {
      underWay.delete(enc);
      leave?.();
      const left = (inFlight.get(env.from) ?? 1) - 1;
      if (left > 0) inFlight.set(env.from, left);
      else inFlight.delete(env.from);
    }
  }

  return { handle, sweep: () => answers.sweep() };
}
