/**
 * A party on the broker: a device agent or a service. One place that turns
 * envelopes into requests, replies and channel messages, so agents and
 * services share the same checks in the same order:
 *   strict decode → addressed to me → open (authenticate) → replay guard →
 *   dispatch.
 * Input an attacker can send is dropped and counted by KagiError code, never
 * thrown. The transport (MQTT client or host bridge) and timers are injected.
 */
import { WaiterBook } from './waiter-book.js';
import type { Crypto } from './crypto/backend.js';
import { channelTag, type ChannelBook, type ChannelKeys } from './channel.js';
import { KagiError, isKagiError } from './errors.js';
import { decodeEnvelope, type Envelope } from './envelope.js';
import { checkRequestAge, openRequest, openSymmetric, PendingReplies, RequestSecrets, sealRequest, sealSymmetric, SERVICE_AGE_BOUNDS, wireSeconds, type AgeBounds } from './sealed.js';
import { ReplayGuard, SendCounter } from './replay.js';
import type { NumberStore } from './store.js';
import type { MessageType } from './messages.js';
import { LIMITS } from './limits.js';
import { toHex } from './bytes.js';
import { RandomPool } from './random-pool.js';

/** Encapsulated keys of opened requests remembered (a copy of any of these is dropped before HPKE). */
const RECENT_ENC = 4096;

export interface Transport {
  publish(topic: string, payload: Uint8Array): Promise<void>;
}

export interface Incoming {
  env: Envelope;
  body: unknown;
  secrets: RequestSecrets;
  /** The era of the sender's seq (replay.ts): seqs of one era are ordered. */
  era: number;
  /** Raw bytes as received (for forwarding). */
  bytes: Uint8Array;
}

export interface ChannelMessage {
  env: Envelope;
  body: unknown;
  /** The channel it opened under (the book's, or a proposed one, which an answer goes back under). */
  keys: ChannelKeys;
  /** It opened under a proposed channel (PeerOptions.proposedChannels), not the book's. */
  proposed: boolean;
}

export interface Reply {
  type: MessageType;
  body: unknown;
}

export interface PeerOptions {
  crypto: Crypto;
  id: string;
  secretKey: Uint8Array;
  numbers: NumberStore;
  transport: Transport;
  /** Static public key of a party, to open what it sealed. */
  keyOf(id: string): Promise<Uint8Array | undefined>;
  /** Where replies to `id` go (a service's reply topic or a device inbox). */
  replyTopic(id: string): string;
  /** Handle a sealed request addressed to us; a returned Reply is sent back. */
  onRequest?(m: Incoming): Promise<Reply | undefined>;
  /** Channel keys by peer; without it, channel messages are dropped. */
  channels?: ChannelBook;
  /**
   * Channels with `from` that we proposed and it has not used yet (a join's
   * keys channel, decision 134), tried after the book's: the handler is
   * told which one opened a message (ChannelMessage.proposed), and takes it.
   */
  proposedChannels?(from: string): ChannelKeys[];
  /** A channel message that answers none of our requests; a returned Reply goes back on the channel. */
  onChannel?(m: ChannelMessage): Promise<Reply | undefined>;
  /**
   * Several instances share this identity: seqs are reserved this many at a
   * time (1 keeps instances' numbers close, within the receivers' window;
   * default 64).
   */
  sendBlock?: number;
  /**
   * Whether this instance takes channel messages that answer none of its
   * own requests (default yes). With several instances every one receives
   * them; only the leader of the service's duties takes them, and the
   * others leave them unclaimed.
   */
  takesUnsolicited?(): boolean;
  /**
   * Which sealed requests to us this party takes at all, judged on the
   * header alone (type, sender) before any key lookup or HPKE: the rest is
   * dropped ('type'). Default: every one.
   */
  takesRequest?(env: Envelope): boolean;
  /** Which channel messages that answer none of our requests this party takes, by header (default: every one). */
  takesChannel?(env: Envelope): boolean;
  /** A sealed message addressed to someone else (the front door forwards). */
  onForeign?(env: Envelope, bytes: Uint8Array): Promise<void>;
  log?(level: 'debug' | 'info' | 'warn', msg: string): void;
  /** Each dropped input, by reason (a KagiError code, or not-for-me / not-leader): for metrics. */
  onDrop?(reason: string): void;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (t: unknown) => void;
  /** Our clock (ms; default Date.now): requests carry it as issuedAt, corrected by what a time source told us. */
  now?(): number;
  /**
   * Whether `now` tells the time (a host with a real-time clock; default
   * yes). A board's clock may only count: until a time source has answered
   * one of our requests, requests to us are not checked for age.
   */
  wallClock?: boolean;
  /**
   * Parties whose answer sets our clock (devices: the services; an admin:
   * config): a 'stale' error from one of them carries its clock, and the
   * request is sealed once more with the corrected time. Services learn
   * from nobody (their hosts keep time).
   */
  timeFrom?(id: string): boolean;
  /** What age of a request to us is accepted (default SERVICE_AGE_BOUNDS). */
  ageBounds?: AgeBounds;
}

/** What `request` seals and where it waits. */
export interface RequestArgs {
  to: string;
  pkR: Uint8Array;
  topic: string;
  type: MessageType;
  body: unknown;
  replyFrom?: string;
  /** How long to wait for the answer before giving up (or, within copiesWithinMs, sending a copy). */
  timeoutMs: number;
  /**
   * For this long (ms; in waits of timeoutMs), a wait that runs out
   * publishes the same bytes again and waits once more, instead of giving
   * up: a receiver behind a long queue then acts on the request once and
   * answers the copies from what it kept (decision 130). 0 (default): give
   * up at the first timeout.
   */
  copiesWithinMs?: number;
  /** Each copy sent, with how long the request has waited so far (ms): for the requester's log. */
  onCopy?(waitedMs: number): void;
  /** The request is sealed (before it goes out): what its secrets give now, the answer cannot wait for (a join's keys channel). */
  onSealed?(secrets: RequestSecrets): void;
}

/** A request awaiting its answer: a reply (sealed requests) or a channel message from `peer`; `sent` is what went out, for resend(). */
interface Waiter {
  peer: string;
  channel: boolean;
  resolve(r: Reply): void;
  reject(e: Error): void;
  timer: unknown;
  sent?: { topic: string; bytes: Uint8Array };
  /** A channel request: the keys it was sealed under, which its answer is sealed under too (no second read of the book). */
  keys?: ChannelKeys;
}

export class Peer {
  readonly counters: SendCounter;
  readonly guard: ReplayGuard;
  private readonly pending = new PendingReplies();
  /** Requests awaiting an answer, by reqId (and by peer, for resend). */
  private readonly waiters = new WaiterBook<Waiter>();
  /**
   * The HPKE encapsulated keys (enc) of the last requests that opened:
   * every sealing draws a fresh ephemeral key, so a request whose enc is
   * here is a copy, dropped before the HPKE open it would cost (the replay
   * window, which needs the era inside the ciphertext, catches the rest).
   */
  private readonly recentEnc = new Set<string>();
  /** Dropped input by reason: what an operator graphs, not what they log. */
  readonly dropped = new Map<string, number>();
  /** Seconds to add to our clock, learned from a time source's 'stale' answer. */
  private clockOffset = 0;
  /** Our clock is known to be within bounds: a wall clock, or a time source answered us. */
  private synced: boolean;

  /** Request ids and eras (public) come from random bytes drawn in blocks. */
  private readonly random: RandomPool;

  constructor(private readonly o: PeerOptions) {
    o.crypto.holdStaticKey(o.secretKey); // every request we seal or open uses it
    const random = (this.random = new RandomPool((n) => o.crypto.randomBytes(n)));
    this.counters = new SendCounter(o.numbers, o.sendBlock ?? 64, `tx:${o.id}:`, (n) => random.take(n));
    this.guard = new ReplayGuard(o.numbers, `rx:${o.id}:`);
    this.synced = o.wallClock ?? true;
  }

  /** Our corrected clock, in wire seconds. */
  nowSeconds(): number {
    return wireSeconds((this.o.now ?? Date.now)() + this.clockOffset * 1000);
  }

  /** Throws KagiError('stale') for a request issued outside our bounds (not checked before our clock is synced). */
  checkAge(issuedAt: number): void {
    if (this.synced) checkRequestAge(issuedAt, this.nowSeconds(), this.o.ageBounds ?? SERVICE_AGE_BOUNDS);
  }

  /**
   * A time source answered `r`: our clock is good enough now, and a
   * 'stale' error (authenticated under our request's reply key) says what
   * its clock reads. True when that moved our clock.
   */
  private learnTime(from: string, r: Reply): boolean {
    if (!this.o.timeFrom?.(from)) return false;
    this.synced = true;
    const clock = r.type === 'error' && r.body instanceof Object ? (r.body as { clock?: unknown }).clock : undefined;
    if (typeof clock !== 'number' || !Number.isInteger(clock) || clock <= 0) return false;
    const before = this.clockOffset;
    this.clockOffset += clock - this.nowSeconds();
    this.o.log?.('info', `${this.o.id}: our clock was ${clock - wireSeconds((this.o.now ?? Date.now)() + before * 1000)} s off ${from}'s; corrected`);
    return true;
  }

  get id(): string {
    return this.o.id;
  }

  private drop(reason: string, detail: string): void {
    this.dropped.set(reason, (this.dropped.get(reason) ?? 0) + 1);
    this.o.onDrop?.(reason);
    this.o.log?.('debug', `${this.o.id}: dropped (${reason}) ${detail}`);
  }

  /** A fresh request id (public, in every envelope). */
  private newReqId(): number {
    return this.random.uint32() % LIMITS.maxSeq;
  }

  /**
   * Seal a request to `to` (static key pkR), publish it on `topic` and wait
   * for the reply from `replyFrom` (default: `to`). The request's secrets
   * (channel keys) come back with the reply; the caller destroys them.
   */
  async request(
    a: RequestArgs,
  ): Promise<Reply & { secrets: RequestSecrets; seq: number }> {
    const r = await this.requestOnce(a);
    // Refused as stale by a time source: our clock is corrected; once more.
    if (!this.learnTime(a.replyFrom ?? a.to, r)) return r;
    r.secrets.destroy();
    return this.requestOnce(a);
  }

  private async requestOnce(
    a: RequestArgs,
  ): Promise<Reply & { secrets: RequestSecrets; seq: number }> {
    const { seq, era } = await this.counters.takeWithEra(a.to);
    const reqId = this.newReqId();
    const { bytes, secrets } = sealRequest(this.o.crypto, { type: a.type, from: this.o.id, to: a.to, seq, reqId }, this.o.secretKey, a.pkR, a.body, this.nowSeconds(), era);
    a.onSealed?.(secrets);
    const from = a.replyFrom ?? a.to;
    this.pending.expect(reqId, from, secrets);
    const answer = this.wait(reqId, from, false, `${a.type}`, a.timeoutMs, { topic: a.topic, bytes }, undefined, a.copiesWithinMs, a.onCopy);
    // A publish can hang or fail while the link is down; the reply timer
    // still decides (callers retry on 'unexpected'), so a failed send waits
    // out the timeout instead of spinning through retries at once.
    const sent = this.o.transport.publish(a.topic, bytes).then(() => answer, () => answer);
    try {
      return { ...(await Promise.race([sent, answer])), secrets, seq };
    } catch (e) {
      secrets.destroy();
      throw e;
    }
  }

  /** `copiesWithinMs`: see RequestArgs. */
  private wait(reqId: number, peer: string, channel: boolean, what: string, timeoutMs: number, sent?: Waiter['sent'], keys?: ChannelKeys, copiesWithinMs = 0, onCopy?: (waitedMs: number) => void): Promise<Reply> {
    const set = this.o.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    const clear = this.o.clearTimeout ?? ((t) => clearTimeout(t as ReturnType<typeof setTimeout>));
    const now = this.o.now ?? Date.now;
    if (this.waiters.has(reqId)) throw new KagiError('argument', `reqId ${reqId} already pending`);
    return new Promise<Reply>((resolve, reject) => {
      const since = now();
      // Counted, not timed: a timer that fires a little late must not cost
      // the last copy (the receiver takes a request a minute after its issue).
      let copies = Math.max(0, Math.ceil(copiesWithinMs / timeoutMs) - 1);
      const w: Waiter = { peer, channel, resolve: (r) => (clear(w.timer), resolve(r)), reject, timer: undefined, ...(sent ? { sent } : {}), ...(keys ? { keys } : {}) };
      const expire = () => {
        // Young enough to be taken still: the same bytes again (the receiver
        // takes one copy and answers the others from what it kept), not a
        // new request that would be a second one to act on.
        if (w.sent && copies-- > 0) {
          this.o.transport.publish(w.sent.topic, w.sent.bytes).catch(() => {});
          w.timer = set(expire, timeoutMs);
          onCopy?.(now() - since);
          return;
        }
        this.waiters.delete(reqId);
        this.pending.cancel(reqId);
        reject(new KagiError('unexpected', `no reply from ${peer} to ${what} within ${copiesWithinMs ? now() - since : timeoutMs} ms`));
      };
      w.timer = set(expire, timeoutMs);
      this.waiters.set(reqId, w);
    });
  }

  /**
   * Publish again, byte for byte, every request still waiting for `peer`
   * (every one, without it). A clean-session MQTT client loses what the
   * broker sent it while it was disconnected, and a broker may drop a
   * client at any time (Mosquitto's dynsec does when the client's roles
   * change, which is what a join does): so the party whose connection came
   * back is sent again what it may have missed. A copy that arrives twice
   * is dropped by the receiver (same HPKE enc, or same seq) before any
   * work; nothing is sealed again. Returns how many went out.
   */
  async resend(peer?: string): Promise<number> {
    const again = this.waiters.waiting(peer).filter((w) => w.sent);
    await Promise.all(again.map((w) => this.o.transport.publish(w.sent!.topic, w.sent!.bytes).catch(() => {})));
    return again.length;
  }

  /**
   * Send a channel message to `to` (one way). `reqId` answers one of theirs;
   * by default a fresh one. Fails with KagiError('key') without a channel.
   */
  async sendChannel(to: string, r: Reply, reqId = this.newReqId(), keys?: ChannelKeys): Promise<number> {
    await this.o.transport.publish(this.o.replyTopic(to), (await this.sealChannel(to, r, reqId, keys)).bytes);
    return reqId;
  }

  /** Under `keys`, or the book's channel with `to`. */
  private async sealChannel(to: string, r: Reply, reqId: number, given?: ChannelKeys): Promise<{ bytes: Uint8Array; keys: ChannelKeys; seq: number }> {
    const keys = given ?? (await this.o.channels?.get(to));
    if (!keys) throw new KagiError('key', `no channel with ${to}`);
    const seq = await this.counters.take(to);
    return { bytes: sealSymmetric(this.o.crypto, { type: r.type, from: this.o.id, to, seq, reqId }, keys.send, r.body), keys, seq };
  }

  /**
   * A channel message to `to` and its answer on the channel (same reqId);
   * `keys`: a channel not in the book (a join's, decision 134). With the
   * seq the message went out with.
   */
  async channelRequest(a: { to: string; type: MessageType; body: unknown; timeoutMs: number; keys?: ChannelKeys }): Promise<Reply & { seq: number }> {
    const reqId = this.newReqId();
    const topic = this.o.replyTopic(a.to);
    // Without a channel there is nothing to wait for: KagiError('key') at once.
    const { bytes, keys, seq } = await this.sealChannel(a.to, { type: a.type, body: a.body }, reqId, a.keys);
    const answer = this.wait(reqId, a.to, true, a.type, a.timeoutMs, { topic, bytes }, keys);
    const sent = this.o.transport.publish(topic, bytes).then(() => answer, () => answer);
    try {
      return { ...(await Promise.race([sent, answer])), seq };
    } catch (e) {
      this.cancel(reqId, e as Error);
      throw e;
    }
  }

  private cancel(reqId: number, e: Error): void {
    const w = this.waiters.get(reqId);
    if (!w) return;
    (this.o.clearTimeout ?? ((t) => clearTimeout(t as ReturnType<typeof setTimeout>)))(w.timer);
    this.waiters.delete(reqId);
    this.pending.cancel(reqId);
    w.reject(e);
  }

  /** Seal a reply (or error) to request `reqId` of `to` under its reply key; the bytes sent. */
  async sendReply(to: string, reqId: number, key: Uint8Array, r: Reply): Promise<Uint8Array> {
    const seq = await this.counters.take(to);
    const bytes = sealSymmetric(this.o.crypto, { type: r.type, from: this.o.id, to, seq, reqId }, key, r.body);
    await this.o.transport.publish(this.o.replyTopic(to), bytes);
    return bytes;
  }

  /** A reply sent before, published again as it was (its request came again: the first may be lost). */
  async publishReply(to: string, bytes: Uint8Array): Promise<void> {
    await this.o.transport.publish(this.o.replyTopic(to), bytes);
  }

  /** Feed one received payload. Never throws for bad input. */
  async receive(bytes: Uint8Array): Promise<void> {
    let env: Envelope;
    try {
      env = decodeEnvelope(bytes);
    } catch (e) {
      if (isKagiError(e)) return this.drop(e.code, 'undecodable envelope');
      throw e;
    }
    try {
      if (env.to !== this.o.id) {
        if (env.kind === 'sealed' && this.o.onForeign) return await this.o.onForeign(env, bytes);
        return this.drop('not-for-me', `${env.type} to ${env.to}`);
      }
      if (env.kind === 'reply') return await this.onReply(env);
      if (env.kind === 'sealed') return await this.onSealed(env, bytes);
      return await this.onChannelMessage(env);
    } catch (e) {
      if (isKagiError(e)) return this.drop(e.code, `${env.type} from ${env.from}: ${e.message}`);
      throw e;
    }
  }

  private async onReply(env: Envelope): Promise<void> {
    // No seq check: a reply opens only under its request's reply key, and
    // only once (PendingReplies consumes it), so a replay is 'unexpected';
    // a replier that lost its counters is not refused for it.
    const body = this.pending.open(this.o.crypto, env);
    const w = this.waiters.get(env.reqId);
    this.waiters.delete(env.reqId);
    w?.resolve({ type: env.type, body });
  }

  private async onChannelMessage(env: Envelope): Promise<void> {
    const w = this.waiters.get(env.reqId);
    const answer = w !== undefined && w.channel && w.peer === env.from;
    if (!answer && this.o.takesChannel && !this.o.takesChannel(env)) return this.drop('type', `${env.type} from ${env.from} on a channel`);
    // Before the claim: an instance that will not act must not take it from the one that will.
    if (!answer && this.o.takesUnsolicited && !this.o.takesUnsolicited()) return this.drop('not-leader', `${env.type} from ${env.from}`);
    const { keys, body, proposed } = (answer && this.openWith(env, w!.keys)) || (await this.openOnChannel(env));
    await this.guard.acceptOnChannel(env.from, channelTag(this.o.crypto, keys), env.seq);
    if (answer && this.waiters.get(env.reqId) === w) {
      this.waiters.delete(env.reqId);
      return w!.resolve({ type: env.type, body });
    }
    if (answer && this.o.takesUnsolicited && !this.o.takesUnsolicited()) return; // late for its request; not ours to act on
    const reply = await this.o.onChannel?.({ env, body, keys, proposed });
    // An answer to a message on a proposed channel goes back on that one,
    // taken or not (a newer one may hold the book): its sender waits on it.
    if (reply) await this.sendChannel(env.from, reply, env.reqId, proposed ? keys : undefined);
  }

  /**
   * An answer to our channel request, opened under the keys the request
   * went out under: one read of the channel book per round trip, not two
   * (2.3% of a rekey of 10,000). Undefined if it does not open there: the
   * peer replaced the channel between our request and its answer, and the
   * book's current keys are tried (openOnChannel).
   */
  private openWith(env: Envelope, keys: ChannelKeys | undefined, proposed = false): { keys: ChannelKeys; body: unknown; proposed: boolean } | undefined {
    if (!keys) return undefined;
    try {
      return { keys, body: openSymmetric(this.o.crypto, env, keys.recv), proposed };
    } catch (e) {
      if (isKagiError(e)) return undefined;
      throw e;
    }
  }

  /**
   * A channel message opened under the sender's channel as the book holds
   * it now, or else under one we proposed to it (tried only then: an AEAD
   * open each, and at most a few are proposed at once).
   */
  private async openOnChannel(env: Envelope): Promise<{ keys: ChannelKeys; body: unknown; proposed: boolean }> {
    const keys = await this.o.channels?.get(env.from);
    const proposed = this.o.proposedChannels?.(env.from) ?? [];
    if (proposed.length > 0) {
      for (const k of keys ? [keys, ...proposed] : proposed) {
        const opened = this.openWith(env, k, k !== keys);
        if (opened) return opened;
      }
    }
    if (!keys) throw proposed.length > 0 ? new KagiError('auth', `${env.type} from ${env.from} opens under no channel we proposed`) : new KagiError('key', `no channel with ${env.from}`);
    // Under the book's channel alone: its own error (auth, a malformed body) if it does not open.
    return { keys, body: openSymmetric(this.o.crypto, env, keys.recv), proposed: false };
  }

  /**
   * A sealed request to us. The cheap checks come first, each before any
   * work that costs more (issue 23): the type and sender this party takes
   * (header), a copy of a request already opened (enc), the sender's key
   * (a store read); only then the HPKE open, the age and the replay window.
   */
  private async onSealed(env: Envelope, bytes: Uint8Array): Promise<void> {
    if (this.o.takesRequest && !this.o.takesRequest(env)) return this.drop('type', `${env.type} from ${env.from}`);
    const enc = toHex(env.enc!);
    if (this.recentEnc.has(enc)) return this.drop('replay', `${env.type} from ${env.from}: a copy of one already opened`);
    const pkS = await this.o.keyOf(env.from);
    if (!pkS) throw new KagiError('unexpected', `unknown sender ${env.from}`);
    const { body, issuedAt, era, secrets } = openRequest(this.o.crypto, env, this.o.secretKey, pkS);
    this.recentEnc.add(enc);
    if (this.recentEnc.size > RECENT_ENC) this.recentEnc.delete(this.recentEnc.values().next().value!);
    try {
      this.checkAge(issuedAt);
    } catch (e) {
      // Late (held back, or its sender gave up) or early: refused, not
      // recorded. The answer carries our clock; a sender still waiting for
      // it that takes us as its time source corrects its clock and asks
      // again, one that gave up drops it as unexpected.
      this.drop('stale', `${env.type} from ${env.from}: ${(e as Error).message}`);
      await this.sendReply(env.from, env.reqId, secrets.replyKey(), { type: 'error', body: { reason: (e as Error).message, clock: this.nowSeconds() } });
      return secrets.destroy();
    }
    await this.guard.accept(env.from, env.seq, era);
    const reply = await this.o.onRequest?.({ env, body, secrets, era, bytes });
    if (reply) await this.sendReply(env.from, env.reqId, secrets.replyKey(), reply);
    secrets.destroy();
  }

  /** Reject every waiting request (shutdown). */
  cancelAll(reason: string): void {
    for (const reqId of this.waiters.ids()) this.cancel(reqId, new KagiError('unexpected', reason));
  }
}
