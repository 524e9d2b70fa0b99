/**
 * Auth server (patent 2): device auth by MAC + device credential (2a) and
 * user auth by id + password (2b), over table 2c. It only ever talks to the
 * config server, which forwards the device's sealed requests unopened: the
 * config server never sees a password.
 *
 * A verified request's reply key and channel keys are handed to the config
 * server (sealed between the two services), so the config server can answer
 * the device and poll it over the channel of its authentication.
 */
import { decodeEnvelope, type Envelope } from '../../protocol/envelope.js';
import { openRequest } from '../../protocol/sealed.js';
import { asBody, bytes, str, type Body } from '../../protocol/body.js';
import { isKagiError } from '../../protocol/errors.js';
import type { Peer } from '../../protocol/peer.js';
import { startService, type ServiceContext } from '../service-host.js';
import type { DeviceRow } from '../store/store.js';
import { PasswordCheck, type PasswordCheckOptions } from './password-check.js';
import { sealTicket, ticketId, TICKET_SECRET_LENGTH, type Ticket } from '../../protocol/ticket.js';
import { wipe } from '../../protocol/bytes.js';
import { TicketDesk } from './tickets.js';
import { AuthHistory } from './history.js';

type Verdict = Body & { ok: boolean };

/** Why a request was refused, as a code (metrics label) and as words (logs, the device). */
export const REFUSAL_CODES = ['malformed', 'unknown-device', 'not-a-device', 'revoked', 'credential', 'stale', 'replay', 'relay-binding', 'mac', 'password', 'throttled', 'busy', 'no-vpn', 'unknown-op',
  'ticket-unknown', 'ticket-expired', 'ticket-reused', 'ticket-invalid'] as const;
type RefusalCode = typeof REFUSAL_CODES[number];

export interface AuthOptions {
  /** The password check's hash pool and throttling (issue 21). */
  password?: PasswordCheckOptions;
  /** How long a resumption ticket is good for (ms; default 30 days). */
  ticketLifetimeMs?: number;
}

/** How often keys of long-quiet password failures are forgotten. */
const PRUNE_EVERY_MS = 10 * 60_000;

function refuse(code: RefusalCode, reason: string, extra: Body = {}): Verdict {
  return { ok: false, code, reason, ...extra };
}

/**
 * The refusal of a request whose MAC is not the device's, or undefined when
 * it is (compared without regard to case: 02:AB… is 02:ab…). The config
 * request's check and a terminal's join's (decision 122) are this one.
 */
function wrongMac(body: Body, device: DeviceRow, extra: Body): Verdict | undefined {
  const mac = str(body, 'mac', 32);
  return mac.toLowerCase() === device.mac.toLowerCase() ? undefined : refuse('mac', `MAC ${mac} does not match device ${device.id}`, extra);
}

/** The auth server is asked by the config server alone (before any HPKE: Peer.takesRequest). */
const fromConfig = (env: { from: string; type: string }) => env.from === 'config' && env.type === 'service.request';

export async function startAuth(ctx: ServiceContext, o: AuthOptions = {}) {
  let peer!: Peer;
  const passwords = await PasswordCheck.start(ctx.store, ctx.metrics, o.password);
  const tickets = new TicketDesk(ctx, o.ticketLifetimeMs);
  const history = new AuthHistory(ctx);

  /** Open a device's sealed request forwarded by the config server. */
  async function openDeviceRequest(raw: Uint8Array, type: Envelope['type']) {
    let env: Envelope;
    try {
      env = decodeEnvelope(raw);
    } catch {
      return { refusal: refuse('malformed', 'malformed request') };
    }
    if (env.type !== type || env.to !== 'auth') return { refusal: refuse('malformed', `not a ${type} to auth`) };
    const device = await ctx.store.getDevice(env.from);
    // An unknown id is not recorded: anyone can make one up, and kagi why has nothing to say of it.
    if (!device) return { refusal: refuse('unknown-device', `unknown device ${env.from}`) };
    // Nothing here is recorded for kagi why (no `about`): the sender is not
    // authenticated yet, or its request is not fresh (a replay anyone can
    // send), and input an attacker can make changes no table (decision 79).
    if (device.revoked) return { refusal: refuse('revoked', `device ${env.from} is revoked`) };
    // An operator's admin key works the admin API only, never as a device.
    if (device.kind === 'admin') return { refusal: refuse('not-a-device', `${env.from} is an admin, not a device`) };
    let opened;
    try {
      opened = openRequest(ctx.crypto, env, ctx.keys.auth.secretKey, device.publicKey);
    } catch {
      return { refusal: refuse('credential', `device credential of ${env.from} does not verify`) };
    }
    const replyKey = opened.secrets.replyKey();
    try {
      peer.checkAge(opened.issuedAt);
    } catch (e) {
      if (!isKagiError(e, 'stale')) throw e;
      // Refused under its reply key, with our clock: a device still waiting
      // corrects its clock and asks again; a request held back finds nobody.
      opened.secrets.destroy();
      return { refusal: refuse('stale', `${type} from ${env.from}: ${e.message}`, { replyTo: env.from, reqId: env.reqId, replyKey, clock: peer.nowSeconds() }) };
    }
    try {
      await peer.guard.accept(env.from, env.seq, opened.era);
    } catch (e) {
      if (isKagiError(e, 'replay')) return { refusal: refuse('replay', `replayed ${type} from ${env.from}`) };
      throw e;
    }
    return { env, device, body: asBody(opened.body), secrets: opened.secrets, replyKey };
  }

  /**
   * Who the request is for: the sender itself, or (DESIGN §7) a plaintext
   * terminal behind the sending relay, stated as { id, port } and checked
   * against the binding registered for that terminal.
   */
  async function subject(sender: DeviceRow, body: Body): Promise<{ device: DeviceRow; via: Body | null } | [RefusalCode, string, string]> {
    if (body.onBehalf === undefined) return { device: sender, via: null };
    const ob = asBody(body.onBehalf);
    const id = str(ob, 'id', 64);
    const port = str(ob, 'port', 64);
    // The third element: the device kagi why records the refusal for.
    if (sender.kind !== 'relay') return ['relay-binding', `${sender.id} is not a relay and cannot speak for ${id}`, sender.id];
    const plain = await ctx.store.getDevice(id);
    if (!plain || plain.kind !== 'plaintext') return ['unknown-device', `unknown plaintext terminal ${id}`, sender.id];
    if (plain.revoked) return ['revoked', `device ${id} is revoked`, id];
    if (plain.relayId !== sender.id || plain.relayPort !== port) return ['relay-binding', `${id} is not bound to port ${port} of ${sender.id}`, id];
    return { device: plain, via: { relay: sender.id, port } };
  }

  async function deviceAuth(raw: Uint8Array): Promise<Verdict> {
    const r = await openDeviceRequest(raw, 'config.request');
    if ('refusal' in r) return r.refusal!;
    const common = { replyTo: r.env.from, reqId: r.env.reqId, replyKey: r.replyKey };
    const who = await subject(r.device, r.body);
    if (Array.isArray(who)) return refuse(who[0], who[1], { ...common, about: { device: who[2] } });
    const about = { about: { device: who.device.id } };
    const macRefused = wrongMac(r.body, who.device, { ...common, ...about });
    if (macRefused) return macRefused;
    const channel = r.secrets.channelKeys();
    r.secrets.destroy();
    return { ok: true, ...common, ...about, deviceId: who.device.id, via: who.via, kind: who.device.kind, mac: who.device.mac, channelUp: channel.up, channelDown: channel.down };
  }

  async function userJoin(raw: Uint8Array, aside?: () => void): Promise<Verdict> {
    const r = await openDeviceRequest(raw, 'join.request');
    if ('refusal' in r) return r.refusal!;
    // Every authentication of a device renews its config channel (an
    // external terminal has no config request to take it from).
    const channel = r.secrets.channelKeys();
    const ticketKey = r.secrets.ticketKey();
    // A join that asks for its keys on its own keys channel (decision 134):
    // the key server gets it through the config server, with the verdict.
    const keysChannel = r.body.keys === 'channel' ? r.secrets.keysChannelKeys() : undefined;
    r.secrets.destroy();
    try {
      const v = await checkUser(r, channel, ticketKey, aside);
      if (v.ok && keysChannel) return { ...v, keysUp: keysChannel.up, keysDown: keysChannel.down };
      if (keysChannel) wipe(keysChannel.up, keysChannel.down);
      return v;
    } finally {
      wipe(ticketKey);
    }
  }

  async function checkUser(r: { env: Envelope; device: DeviceRow; body: Body; replyKey: Uint8Array }, channel: { up: Uint8Array; down: Uint8Array }, ticketKey: Uint8Array, aside?: () => void): Promise<Verdict> {
    const who = await subject(r.device, r.body);
    if (Array.isArray(who)) return refuse(who[0], who[1], { replyTo: r.env.from, reqId: r.env.reqId, replyKey: r.replyKey, about: { device: who[2] } });
    const userId = str(r.body, 'user', 64);
    // Every verdict from here is about this device joining as this user (kagi why).
    const common = { replyTo: r.env.from, reqId: r.env.reqId, replyKey: r.replyKey, about: { device: who.device.id, user: userId } };
    // A device's own join carries its MAC, checked as the config request's
    // is, before any password: no config request goes before a join
    // (decisions 122, 138). A relay's join for a plaintext terminal carries
    // none (the relay's own key speaks for the port).
    const macRefused = who.via ? undefined : r.body.mac === undefined ? refuse('mac', `a join from ${who.device.id} carries no MAC`, common) : wrongMac(r.body, who.device, common);
    if (macRefused) return macRefused;
    const presented = r.body.ticket === undefined ? null : asBody(r.body.ticket);
    // The password's throttle reset, under way: it commits with the ticket.
    let cleared: Promise<void> | undefined;
    if (!presented) {
      const user = await ctx.store.getUser(userId);
      aside?.(); // from here it waits on the hash pool, which bounds itself (busy)
      const pw = await passwords.check(user, userId, who.device.id, str(r.body, 'password', 1024));
      if (!pw.ok && pw.code === 'password') {
        // One answer for both, at the same cost: a prober learns no user ids.
        // The operator's log line (detail) says which.
        return refuse('password', 'wrong user id or password', { ...common, detail: `${pw.detail === 'unknown-user' ? 'unknown user' : 'wrong password for'} ${userId} from ${who.device.id}` });
      }
      // The device waits retryAfter seconds (with jitter) and asks again.
      if (!pw.ok) return refuse(pw.code, pw.code === 'busy' ? 'the auth server is busy: try again later' : 'too many failed password attempts: try again later', { ...common, retryAfter: pw.retryAfter, detail: pw.detail });
      cleared = pw.cleared;
    }
    const vpns = [];
    for (const id of await ctx.store.grantsOf(userId)) {
      const v = await ctx.store.getVpn(id);
      if (v) vpns.push({ id: v.id, protocol: v.protocol, port: v.port });
    }
    // Grants are checked at every join: a ticket carries identity, never memberships.
    if (vpns.length === 0) {
      await cleared;
      return refuse('no-vpn', `user ${userId} is not a member of any VPN`, common);
    }
    let ticket: Ticket;
    if (presented) {
      const t = await tickets.redeem(who.device.id, userId, { id: ticketId(str(presented, 'id', 64)), secret: bytes(presented, 'secret', TICKET_SECRET_LENGTH) });
      if ('refusal' in t) return refuse(t.refusal[0], t.refusal[1], common);
      ticket = t.ticket;
    } else {
      // Independent writes, issued together (decision 135): one commit.
      [ticket] = await Promise.all([tickets.issueFirst(who.device.id, userId), cleared]);
    }
    // Sealed for the device alone: the config server forwards it unread.
    const sealedTicket = sealTicket(ctx.crypto, ticketKey, ticket);
    wipe(ticket.secret);
    // Behind an external broker the device reports its own addresses (DESIGN §6).
    const addresses = Array.isArray(r.body.addresses) ? r.body.addresses.filter((a) => typeof a === 'string').slice(0, 8) : [];
    return { ok: true, ...common, deviceId: who.device.id, via: who.via, user: userId, vpns, addresses, channelUp: channel.up, channelDown: channel.down, ticket: sealedTicket };
  }

  /** A service request from the config server, over the broker or by a call (startService's serve). */
  async function serve(from: string, request: unknown, aside?: () => void): Promise<Body | undefined> {
    if (from !== 'config') return undefined;
    const b = asBody(request);
    const op = str(b, 'op', 32);
    const raw = bytes(b, 'envelope');
    const verdict = op === 'device.auth' ? await deviceAuth(raw) : op === 'user.join' ? await userJoin(raw, aside) : refuse('unknown-op', `unknown op ${op}`);
    // The detail is for the operator's log only: not even its length goes on the wire.
    const { detail, about, ...body } = verdict;
    // Not awaited (it never throws: a store failure is logged): the record
    // for kagi why commits with the config server's next writes rather
    // than in a commit of its own before the verdict goes (decision 139).
    if (about !== undefined) void history.note(asBody(about), op === 'device.auth' ? 'config' : 'join', verdict);
    if (!verdict.ok) {
      // Throttled and busy refusals cost a sender no hash, so they come
      // as fast as it sends: counted, and logged at debug only.
      const level = verdict.code === 'throttled' || verdict.code === 'busy' ? 'debug' : 'warn';
      ctx.log(level, `auth: refused ${op}: ${String(verdict.reason)}${typeof detail === 'string' ? ` (${detail})` : ''}`);
      ctx.metrics.count('kagi_refusals_total', { reason: String(verdict.code) });
    }
    return body;
  }

  const pruner = setInterval(() => {
    passwords.throttle.prune().catch((e: Error) => ctx.log('warn', `auth: forgetting old password failures: ${e.message}`));
  }, PRUNE_EVERY_MS);
  pruner.unref();
  const running = await startService('auth', ctx, { serve, takesRequest: fromConfig }, (p) => (peer = p));
  return {
    ...running,
    passwords,
    close: async () => {
      clearInterval(pruner);
      await running.close();
    },
  };
}
