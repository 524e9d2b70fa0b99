/**
 * A device's session with the control plane, shared by every agent kind:
 *  - the MQTT link (with a retained online/offline state and its will); the
 *    first connection is retried with backoff and jitter for as long as it
 *    takes (or `brokerWaitMs`): an agent started in an outage waits for it;
 *  - the Peer that seals and opens, and its two channels: with the config
 *    server (from our latest authentication) and with the key server (from
 *    its latest HPKE key delivery);
 *  - `ask`: a request to the auth server through the config server's front
 *    door, retried on silence (control plane restarting, messages lost);
 *  - liveness (embodiment 4): answering polls (S402), sending "continue"
 *    when not polled for a while (S403), leaving on stop;
 *  - keys: deliveries (sealed) and updates (channel) both go to the agent's
 *    `onKeys`, and a newer epoch seen anywhere is fetched.
 */
import { isKagiError } from '../protocol/errors.js';
import { Peer, type ChannelMessage, type Incoming, type Reply } from '../protocol/peer.js';
import { DEVICE_AGE_BOUNDS, REQUEST_VALIDITY_S } from '../protocol/sealed.js';
import { parseTopic, SERVICES, topics } from '../protocol/topics.js';
import { asBody, list, num, str, type Body } from '../protocol/body.js';
import { asReceiver, asRequester, MemoryChannelBook, type ChannelKeys } from '../protocol/channel.js';
import { toHex, utf8, wipe } from '../protocol/bytes.js';
import { backoffDelay, retryAfterDelay } from '../protocol/backoff.js';
import { openTicket, type Ticket } from '../protocol/ticket.js';
import type { RequestSecrets } from '../protocol/sealed.js';
import type { KnownStatics } from '../protocol/crypto/backend.js';
import { openStaticSecrets, sealStaticSecrets } from '../protocol/static-secrets.js';
import type { Bundle } from './bundle.js';
import { BrokerRefusedError, type Link, type LinkOptions, type Platform } from './platform.js';
import { detach } from './detach.js';

const isService = (id: string): id is 'auth' | 'config' | 'keys' => id === 'auth' || id === 'config' || id === 'keys';

/** A refusal from the control plane, with its reason (and code, and a ticket auth rotated before the refusal). */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
  constructor(
    message: string,
    readonly code?: string,
    readonly ticket?: Ticket,
  ) {
    super(message);
  }
}

/** The secret store's key for the sealed static secrets (beside `ticket:…`). */
export const STATIC_SECRETS = 'static-secrets';

/** Refusals that say when to ask again (seconds): the session waits and asks again by itself. */
const COME_BACK_LATER = new Set(['throttled', 'busy']);

/** What a key holder holds for one member (itself, or a relay port's terminal). */
export interface Held {
  member: string;
  vpns: { id: string; epoch: number }[];
}

export interface SessionHandlers {
  /** A sealed request from a service that is not a key delivery (notices). */
  onRequest(m: Incoming): Promise<Reply | undefined>;
  /** A VPN frame on `kagi/v1/vpn/{vpn}/{target}`. */
  onFrame(vpnId: string, target: string, payload: Uint8Array): void;
  /** Keys for a member (delivery or update): install them, return the ack body. */
  onKeys(body: Body): Body;
  /** Every member we hold keys for, and at which epochs. */
  held(): Held[];
}

/** Liveness parameters; the control plane sends its own with config and join. */
export interface Liveness {
  pollIntervalMs: number;
  continueAfterMs: number;
}

export const DEFAULT_LIVENESS: Liveness = { pollIntervalMs: 30_000, continueAfterMs: 75_000 };

/** At most one fetch per (member, VPN) this often (ms). */
const FETCH_EVERY_MS = 2_000;

export interface SessionOptions {
  timeoutMs?: number;
  /** Attempts per request before giving up (Infinity: never; firmware). */
  attempts?: number;
  /** Give up the first connection after this long (ms); default: never. */
  brokerWaitMs?: number;
  /** Told to come back later (throttled, busy): the session waits retryAfter seconds (with jitter) and asks again. */
  onWait?(w: ComeBackLater): void;
}

/** A refusal that says when to ask again. */
export interface ComeBackLater {
  type: string;
  code: string;
  reason: string;
  /** Seconds. */
  retryAfter: number;
}

export class DeviceSession {
  private link: Link | null = null;
  private peer: Peer | null = null;
  private stopped = false;
  private handlers: SessionHandlers | null = null;
  private readonly channels = new MemoryChannelBook();
  /** The era and seq of the key delivery whose channel we hold. */
  private keysAt: { era: number; seq: number } | undefined;
  /**
   * Keys channels of our joins still waiting for the key server's first
   * message (decision 134), newest last: the first message that opens
   * under one makes it the keys channel. A few, as joins under way (a
   * relay's ports, a join asked again).
   */
  private proposedKeys: ChannelKeys[] = [];
  liveness: Liveness = DEFAULT_LIVENESS;
  private lastPoll = 0;
  /** The liveness clock found nothing it could do and waits to be woken (wakeClock). */
  private clockAsleep = false;
  /** How often the liveness clock has woken: a diagnostic (test/e2e/liveness-clock.test.ts). */
  clockWakes = 0;
  private lastContinue = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly fetching = new Map<string, number>();
  /** Peers (hex public keys) whose static secret the secret store holds for us (decision 124). */
  private keptStatics = new Set<string>();
  /** Wake the waits (between first-connection attempts, before asking again) when we stop. */
  private readonly wakers = new Set<() => void>();

  constructor(
    readonly bundle: Bundle,
    private readonly p: Platform,
    private readonly o: SessionOptions = {},
  ) {}

  private get broker(): string {
    return this.p.broker ?? 'the broker';
  }

  /** `subscriptions`: topics beyond our inbox for the CONNECT's SUBSCRIBE (a restarted terminal's VPNs, decision 137). */
  async start(h: SessionHandlers, subscriptions: readonly string[] = []): Promise<void> {
    const b = this.bundle;
    this.stopped = false;
    this.handlers = h;
    // Before the Peer and the CONNECT use the static key: what an earlier
    // run computed for it, if it kept any (decision 124). The facade keeps
    // its own copies; ours are wiped.
    const known = await this.restoreStatics();
    this.p.crypto.holdStaticKey(b.secretKey, known);
    if (known) wipe(...known.shared.map((x) => x.secret));
    this.peer = new Peer({
      crypto: this.p.crypto,
      id: b.id,
      secretKey: b.secretKey,
      numbers: this.p.numbers,
      transport: { publish: (t, m) => this.publish(t, m) },
      keyOf: async (id) => (isService(id) ? b.services[id] : undefined),
      replyTopic: (id) => topics.service(id as 'keys', 'reply'),
      onRequest: (m) => this.onRequest(m),
      channels: this.channels,
      proposedChannels: (from) => (from === 'keys' ? this.proposedKeys : []),
      onChannel: (m) => this.onChannel(m),
      log: this.p.log,
      // Requests carry the time: ours from the platform, corrected by the
      // services' answers (a board may not know the time until then).
      now: () => this.p.now(),
      wallClock: this.p.wallClock ?? true,
      timeFrom: isService,
      ageBounds: DEVICE_AGE_BOUNDS,
    });
    // A block of numbers for each service now, in the same turn as the
    // CONNECT's: one write of the state file for all of them (decision 120).
    // A reservation that fails here is made again at first use.
    for (const s of SERVICES) detach(this.peer.counters.reserve(s), `${b.id}: counters for ${s}`, this.p.log);
    const state = topics.state(b.id);
    // At every connect: say so (the services resend what we may have missed
    // while away), and resend our own requests still waiting for an answer.
    const online = () => {
      if (this.link) detach(this.link.publish(state, utf8('online'), true), `${b.id}: online state`, this.p.log);
      if (this.peer) detach(this.peer.resend(), `${b.id}: resend after reconnect`, this.p.log);
    };
    this.link = await this.firstConnect({
      clientId: b.id,
      secretKey: b.secretKey,
      brokerPublicKey: b.services.broker,
      subscriptions: [topics.inbox(b.id), ...subscriptions],
      // A fast extra liveness signal: the broker publishes "offline" when
      // our connection dies; polls remain the signal that decides.
      will: { topic: state, payload: utf8('offline'), retain: true },
      onConnect: online,
      onMessage: (topic, payload) => {
        const t = parseTopic(topic);
        if (t?.area === 'vpn') return h.onFrame(t.a, t.b, payload);
        if (this.peer) detach(this.peer.receive(payload), `${b.id}: incoming message`, this.p.log, 'warn');
      },
    });
    online();
    this.armTick();
  }

  /**
   * The first connection, retried with backoff and full jitter until it
   * succeeds, `brokerWaitMs` passes, or stop() is called; a refusal by the
   * broker (unknown or revoked identity) is final. Later drops are the
   * link's own business (it reconnects by itself).
   */
  private async firstConnect(l: LinkOptions): Promise<Link> {
    const started = this.p.now();
    for (let attempt = 0; ; attempt++) {
      let why: string;
      try {
        const link = await this.p.connect(l);
        if (!this.stopped) return link;
        await link.close();
        throw new Error('agent stopping');
      } catch (e) {
        if (this.stopped || e instanceof BrokerRefusedError) throw e;
        why = (e as Error).message;
      }
      const delay = backoffDelay(attempt, this.random());
      const waited = this.p.now() - started;
      if (this.o.brokerWaitMs !== undefined && waited + delay > this.o.brokerWaitMs) {
        throw new Error(`${this.bundle.id}: gave up waiting for ${this.broker} after ${waited} ms (${why})`);
      }
      this.p.log('warn', `${this.bundle.id}: waiting for ${this.broker}: ${why}; attempt ${attempt + 2} in ${delay} ms`);
      await this.sleep(delay);
    }
  }

  /** Wait `ms`, or less if we stop (then throws 'agent stopping'). */
  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const wake = () => (clearTimeout(timer), this.wakers.delete(wake), resolve());
      const timer = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
    if (this.stopped) throw new Error('agent stopping');
  }

  /** Jitter needs no secrecy, but a board's Math.random can be poor: use the crypto RNG. */
  private random(): number {
    const b = this.p.crypto.randomBytes(4);
    return (((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]!) / 2 ** 32;
  }

  /**
   * The liveness clock wakes when a continue could next be due (not polled
   * for continueAfterMs, and half an interval since the last continue) and
   * looks again from there: a poll that came meanwhile moves that moment on,
   * so a member polled on time wakes about once per continueAfterMs. It
   * never looks again sooner than a quarter interval (at most 250 ms), the
   * clock's old period. When a continue is due but cannot go (no keys held
   * yet, no config channel) it sleeps until woken (wakeClock).
   *
   * Why not a fixed tick: it woke every agent four times per poll interval
   * to find nothing due. A board pays each wake-up in power, and 10,000
   * agents in one process (bench:storm) spent up to a tenth of it there.
   */
  private armTick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.clockAsleep = false;
    const l = this.liveness;
    const looksAgain = Math.max(20, Math.min(250, Math.floor(l.pollIntervalMs / 4)));
    const due = Math.max(this.lastPoll + l.continueAfterMs, this.lastContinue + l.pollIntervalMs / 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.clockWakes++;
      const next = (awake: boolean) => {
        if (this.stopped || this.timer !== null) return;
        if (awake) this.armTick();
        else this.clockAsleep = true;
      };
      detach(this.tick().then(next, () => next(true)), `${this.bundle.id}: liveness tick`, this.p.log);
    }, Math.max(looksAgain, due - this.p.now()));
  }

  /**
   * The clock sleeps while no continue could go: no keys held, or no
   * config channel (an agent waiting for its join, through a whole restart
   * storm). What can change that wakes it: keys delivered or updated, the
   * config channel renewed, the liveness parameters learned. Before, it
   * looked again four times a second while it waited: in bench:storm, the
   * agents' process made most of its timers there (decision 133).
   */
  private wakeClock(): void {
    if (this.clockAsleep && !this.stopped) this.armTick();
  }

  publish(topic: string, payload: Uint8Array, retain = false): Promise<void> {
    if (!this.link) return Promise.reject(new Error('not connected'));
    return this.link.publish(topic, payload, retain);
  }

  subscribe(...topics: string[]): Promise<void> {
    if (!this.link) return Promise.reject(new Error('not connected'));
    return this.link.subscribe(...topics);
  }

  /** Where an unanswered request went, and what to check (the CLI names its flags). */
  private unanswered(): string {
    return `via ${this.broker} (connected: ${this.link?.connected ? 'yes' : 'no'})${this.p.brokerHint ? ` — ${this.p.brokerHint}` : ''}`;
  }

  /** A request sealed to the auth server, answered by the config server. */
  async ask(type: 'config.request' | 'join.request', op: 'request' | 'join', body: Record<string, unknown>, onWait?: (w: ComeBackLater) => void): Promise<Reply & { ticket?: Ticket }> {
    const attempts = this.o.attempts ?? 5;
    for (let i = 1; ; i++) {
      let proposed: ChannelKeys | undefined;
      try {
        // Copies of the same bytes while the request is valid, then a new
        // one: a join on a ticket acted on three times rotates the ticket
        // under the device and reads as a copied ticket (decision 130).
        // A join asks for its keys on its own keys channel (decision 134),
        // proposed as soon as the request is sealed: they come before the answer.
        const join = type === 'join.request';
        const r = await this.peer!.request({
          to: 'auth', pkR: this.bundle.services.auth, topic: topics.service('config', op), type, body: join ? { ...body, keys: 'channel' } : body, replyFrom: 'config', timeoutMs: this.o.timeoutMs ?? 10_000,
          // (Sealed again with a corrected clock: the first one's is withdrawn.)
          ...(join ? { onSealed: (s: RequestSecrets) => (proposed && this.withdrawKeys(proposed), this.proposeKeys((proposed = asReceiver(s.keysChannelKeys())))) } : {}),
          copiesWithinMs: REQUEST_VALIDITY_S * 1000,
          onCopy: (ms) => this.p.log('warn', `${this.bundle.id}: no reply from config to ${type} within ${ms} ms ${this.unanswered()}; sending it again`),
        });
        try {
          const b = asBody(r.body);
          const ticket = b.ticket instanceof Uint8Array ? this.openTicket(r.secrets, b.ticket) : undefined;
          if (r.type === 'error') {
            const code = typeof b.code === 'string' ? b.code : undefined;
            const retryAfter = typeof b.retryAfter === 'number' ? b.retryAfter : undefined;
            if (code && COME_BACK_LATER.has(code) && retryAfter !== undefined && !this.stopped) {
              const w: ComeBackLater = { type, code, reason: String(b.reason), retryAfter };
              onWait?.(w);
              this.o.onWait?.(w);
              await this.comeBackLater(w, body);
              i--; // an answer, not a lost message: no attempt used
              continue;
            }
            throw new RefusedError(String(b.reason), code, ticket);
          }
          // Our own authentication (not one on a port's behalf) renews the
          // config channel, as the config server does on its side.
          if (body.onBehalf === undefined) {
            await this.channels.set('config', asRequester(r.secrets.channelKeys()));
            this.wakeClock();
          }
          this.learnLiveness(b);
          // A join (not a config request, which a first join follows at
          // once): by its answer the broker's, auth's and, with a VPN, the
          // key server's secrets are all held, so one seal keeps them.
          if (type === 'join.request') this.keepStatics();
          return ticket ? { ...r, ticket } : r;
        } finally {
          r.secrets.destroy();
        }
      } catch (e) {
        if (!isKagiError(e, 'unexpected') || i >= attempts || this.stopped) throw e;
        this.p.log('warn', `${this.bundle.id}: ${(e as Error).message} ${this.unanswered()}; attempt ${i + 1}${Number.isFinite(attempts) ? `/${attempts}` : ''}`);
      } finally {
        // Answered or given up: the key server sends before the answer, so
        // a channel it did not use by now it will not use.
        if (proposed) this.withdrawKeys(proposed);
      }
    }
  }

  /**
   * The static secrets an earlier run kept (decision 124), opened under our
   * static key; none when there is no secret store, nothing kept, or a blob
   * that does not open (then they are computed again, and kept anew).
   */
  private async restoreStatics(): Promise<KnownStatics | undefined> {
    if (!this.p.secrets) return undefined;
    try {
      const blob = await this.p.secrets.get(STATIC_SECRETS);
      const known = blob && openStaticSecrets(this.p.crypto, this.bundle.secretKey, blob);
      if (blob && !known) this.p.log('info', `${this.bundle.id}: kept static secrets did not open: computing them again`);
      for (const x of known?.shared ?? []) this.keptStatics.add(toHex(x.peer));
      return known || undefined;
    } catch (e) {
      this.p.log('warn', `${this.bundle.id}: could not read kept static secrets (${(e as Error).message}): computing them again`);
      return undefined;
    }
  }

  /**
   * Keep, sealed, the static secrets with the broker and services that we
   * hold and have not kept yet (after a join or a key delivery computed
   * one): a write only at the first boot, or after a service's key
   * changed. A failed write costs the next boot its X25519, nothing else.
   */
  private keepStatics(): void {
    if (!this.p.secrets) return;
    const s = this.bundle.services;
    const held = this.p.crypto.heldStatics(this.bundle.secretKey, [s.broker, s.auth, s.config, s.keys]);
    if (!held || held.shared.every((x) => this.keptStatics.has(toHex(x.peer)))) {
      if (held) wipe(...held.shared.map((x) => x.secret));
      return;
    }
    this.keptStatics = new Set(held.shared.map((x) => toHex(x.peer)));
    const blob = sealStaticSecrets(this.p.crypto, this.bundle.secretKey, held);
    wipe(...held.shared.map((x) => x.secret));
    detach(this.p.secrets.set(STATIC_SECRETS, blob), `${this.bundle.id}: keeping its static secrets`, this.p.log);
  }

  /** A ticket auth sealed under this request's ticket key; one that does not open is logged and ignored. */
  private openTicket(secrets: RequestSecrets, sealed: Uint8Array): Ticket | undefined {
    const key = secrets.ticketKey();
    try {
      return openTicket(this.p.crypto, key, sealed);
    } catch (e) {
      this.p.log('warn', `${this.bundle.id}: a ticket in the answer did not open (${(e as Error).message}): ignored`);
      return undefined;
    } finally {
      wipe(key);
    }
  }

  /**
   * Told to come back later (throttled: failed passwords for this user or
   * device; busy: the auth server's hash queue is full): wait that long
   * with jitter, saying so once, then ask again. Never gives up for it.
   */
  private async comeBackLater(w: ComeBackLater, body: Record<string, unknown>): Promise<void> {
    const delay = retryAfterDelay(w.retryAfter, this.random());
    const ob = body.onBehalf as { id?: unknown; port?: unknown } | undefined;
    const whose = ob ? ` for ${String(ob.id)} on port ${String(ob.port)}` : '';
    this.p.log('warn', `${this.bundle.id}: ${w.type}${whose} refused for now (${w.code}: ${w.reason}); asking again in ${Math.round(delay / 1000)} s`);
    await this.sleep(delay);
  }

  private learnLiveness(b: Body): void {
    if (b.liveness === undefined) return;
    const l = asBody(b.liveness);
    this.liveness = { pollIntervalMs: num(l, 'pollIntervalMs'), continueAfterMs: num(l, 'continueAfterMs') };
    this.lastPoll = this.p.now(); // the clock for "not polled for a while" starts now
    if (this.timer || this.clockAsleep) this.armTick();
  }

  private async onRequest(m: Incoming): Promise<Reply | undefined> {
    if (m.env.from !== 'keys' || m.env.type !== 'keys.deliver') return this.handlers!.onRequest(m);
    // A sealed delivery (a key server of an earlier version) renews the keys
    // channel with its HPKE context's export.
    const keys = asReceiver(m.secrets.channelKeys());
    await this.takeKeysChannel(keys, { era: m.era, seq: m.env.seq }, 'keys delivery');
    wipe(keys.send, keys.recv);
    const ack: Reply = { type: 'keys.ack', body: this.handlers!.onKeys(asBody(m.body)) };
    this.wakeClock(); // keys held now: a continue could go
    return ack;
  }

  /** Wait for the key server's first message on a join's keys channel (until that join is answered or given up). */
  private proposeKeys(keys: ChannelKeys): void {
    this.proposedKeys = [...this.proposedKeys, keys];
  }

  /** A join's keys channel the key server has not used (if it did, onChannel took it out). */
  private withdrawKeys(keys: ChannelKeys): void {
    if (!this.proposedKeys.includes(keys)) return;
    this.proposedKeys = this.proposedKeys.filter((k) => k !== keys);
    wipe(keys.send, keys.recv);
  }

  /**
   * The keys channel of a delivery (a join's channel the key server used,
   * or a sealed delivery's export), taken before we acknowledge, as the key
   * server takes it on our ack. Deliveries can arrive out of order (two key
   * server instances at once): the channel of the highest seq is kept, as
   * the key server's book does; an older delivery's keys are still taken and
   * acknowledged. A new era of the key server's counter starts the order
   * again. The book keeps its own copy of `keys`.
   */
  private async takeKeysChannel(keys: ChannelKeys, at: { era: number; seq: number }, what: string): Promise<void> {
    if (this.keysAt && this.keysAt.era === at.era && at.seq <= this.keysAt.seq) {
      this.p.log('debug', `${this.bundle.id}: ${what} ${at.seq} older than ${this.keysAt.seq}: its channel not taken`);
      return;
    }
    await this.channels.set('keys', keys);
    this.keysAt = at;
    this.keepStatics();
  }

  private async onChannel(m: ChannelMessage): Promise<Reply | undefined> {
    const { env } = m;
    if (env.from === 'config' && env.type === 'poll') return this.onPoll(asBody(m.body));
    if (env.from === 'keys' && m.proposed) {
      // A join's keys channel the key server used: no longer proposed, and
      // not wiped (the answer goes under it). Channel messages carry no era.
      this.proposedKeys = this.proposedKeys.filter((k) => k !== m.keys);
      await this.takeKeysChannel(m.keys, { era: this.keysAt?.era ?? 0, seq: env.seq }, "keys on a join's channel");
    }
    if (env.from === 'keys' && env.type === 'keys.update') {
      const updated: Reply = { type: 'keys.updated', body: this.handlers!.onKeys(asBody(m.body)) };
      this.wakeClock();
      return updated;
    }
    this.p.log('debug', `${this.bundle.id}: ignored ${env.type} from ${env.from}`);
    return undefined;
  }

  /** S401 → S402: say what we hold; fetch any epoch newer than ours. */
  private onPoll(b: Body): Reply {
    this.lastPoll = this.p.now();
    const held = this.handlers!.held();
    for (const x of list(b, 'members')) {
      const m = asBody(x);
      const member = str(m, 'id', 64);
      const mine = held.find((h) => h.member === member);
      for (const y of list(m, 'vpns')) {
        const v = asBody(y);
        const have = mine?.vpns.find((w) => w.id === v.id)?.epoch ?? -1;
        if (have >= 0 && num(v, 'epoch') > have) this.fetch(member, str(v, 'id', 64));
      }
    }
    return { type: 'poll.reply', body: { members: held } };
  }

  /**
   * We saw an epoch newer than ours (a poll, a frame): ask the key server
   * for the current one. Rate-limited; failures are retried by the next
   * sighting.
   */
  fetch(member: string, vpn: string): void {
    const key = `${member}/${vpn}`;
    const now = this.p.now();
    if (!this.peer || now - (this.fetching.get(key) ?? -Infinity) < FETCH_EVERY_MS) return;
    this.fetching.set(key, now);
    detach(this.fetchNow(this.peer, member, vpn), `${this.bundle.id}: key fetch`, this.p.log, 'debug', `${member} in ${vpn}`);
  }

  private async fetchNow(peer: Peer, member: string, vpn: string): Promise<void> {
    const r = await peer.channelRequest({ to: 'keys', type: 'keys.fetch', body: { member, vpn }, timeoutMs: this.o.timeoutMs ?? 10_000 });
    if (r.type !== 'keys.update') return;
    const ack = this.handlers!.onKeys(asBody(r.body));
    await peer.sendChannel('keys', { type: 'keys.updated', body: ack });
    this.p.log('info', `${this.bundle.id}: fetched the current epoch of ${vpn}${member === this.bundle.id ? '' : ` for ${member}`}`);
  }

  /**
   * One look of the liveness clock (S403: not polled for longer than
   * continueAfterMs while holding keys, send a continue); false when no
   * continue could go (nothing held, no config channel): the clock sleeps.
   */
  private async tick(): Promise<boolean> {
    const now = this.p.now();
    const l = this.liveness;
    // Every half interval: one continue per poll window, whatever the phase.
    if (now - this.lastPoll < l.continueAfterMs || now - this.lastContinue < l.pollIntervalMs / 2) return true;
    const held = this.handlers?.held() ?? [];
    if (held.length === 0 || !(await this.channels.get('config'))) return false;
    this.lastContinue = now;
    try {
      await this.peer!.sendChannel('config', { type: 'continue', body: { members: held } });
      this.p.log('info', `${this.bundle.id}: not polled for ${now - this.lastPoll} ms, sent continue`);
    } catch (e) {
      this.p.log('debug', `${this.bundle.id}: continue failed: ${(e as Error).message}`);
    }
    return true;
  }

  /** Explicit leave (of `members`, default all we hold): the config server runs the leave steps at once. */
  async leave(members?: Held[], timeoutMs = 1_000): Promise<boolean> {
    const held = members ?? this.handlers?.held() ?? [];
    if (!this.peer || held.length === 0 || !(await this.channels.get('config'))) return false;
    const sent = this.peer.sendChannel('config', { type: 'leave', body: { members: held } }).then(() => true);
    const late = new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref?.());
    return Promise.race([sent, late]).catch(() => false);
  }

  /** Stop: leave first when `leave` (a clean shutdown), then disconnect. */
  async stop(o: { leave?: boolean } = {}): Promise<void> {
    if (o.leave ?? true) await this.leave();
    this.stopped = true;
    for (const wake of [...this.wakers]) wake();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.peer?.cancelAll('agent stopping');
    // Graceful: no will is sent, so say offline ourselves (retained, best effort).
    if (this.link?.connected) await this.link.publish(topics.state(this.bundle.id), utf8('offline'), true).catch(() => {});
    await this.link?.close();
    this.link = null;
    this.channels.clear(); // a memory dump after stop finds no channel key
    for (const k of this.proposedKeys) wipe(k.send, k.recv);
    this.proposedKeys = [];
    this.keysAt = undefined;
  }
}
