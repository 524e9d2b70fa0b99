/**
 * Crypto terminal agent (patent 4): config request with MAC + device
 * credential (4a), user join (4b), key acquisition (4c), VPN traffic (4d).
 *
 * States and the only transitions allowed:
 *   stopped → unconfigured        start()
 *   unconfigured → configured     configure() got its config
 *   configured → joining          join()
 *   unconfigured → joining        join(): on a ticket or with the password,
 *                                 the join does what the config request
 *                                 does (decisions 122, 138)
 *   joining → joined              join.response (keys arrived before it)
 *   joining → configured          join refused or given up (→ unconfigured
 *                                 for a join that had not configured)
 *   joined → configured           out of its last VPN (left, evicted, revoked)
 *   any → stopped                 stop() (a joined agent leaves first)
 * Each operation checks the state it requires first.
 */
import { KagiError } from '../protocol/errors.js';
import type { Incoming, Reply } from '../protocol/peer.js';
import { topics } from '../protocol/topics.js';
import { asBody, bytes, list, num, str, type Body } from '../protocol/body.js';
import type { Bundle } from './bundle.js';
import type { Platform } from './platform.js';
import { DeviceSession, RefusedError, type SessionOptions, type Held } from './session.js';
import { MemorySecretStore, TicketWallet, type JoinAnswer } from './tickets.js';
import { JoinedVpns } from './joined-vpns.js';
import { MemberKeys, type OpenedFrame } from './vpn-keys.js';
import { ALL_MEMBERS } from '../protocol/vpn-frame.js';
export { RefusedError };

export type TerminalState = 'stopped' | 'unconfigured' | 'configured' | 'joining' | 'joined';

export interface VpnInfo {
  id: string;
  protocol: string;
  port: number;
  epoch: number;
}

/** Why the control plane took us out of a VPN (notice 'left'). */
export type LeftReason = 'evicted' | 'revoked' | 'deleted' | 'left';

export interface TerminalOptions {
  timeoutMs?: number;
  /** Attempts per request before giving up (control plane down, lost messages; Infinity: never). */
  attempts?: number;
  /** Give up the first broker connection after this long (ms); default: wait for ever. */
  brokerWaitMs?: number;
  /** Told to come back later (throttled, busy): the agent waits that long with jitter and asks again by itself. */
  onWait?: SessionOptions['onWait'];
  graceMs?: number;
  onData?(vpnId: string, from: string, payload: Uint8Array): void;
  onState?(s: TerminalState): void;
  /** Out of a VPN: its keys are gone; an evicted member must join again. */
  onLeft?(vpnId: string, reason: LeftReason): void;
  /** A VPN granted to our user after we joined (or made again): joining again takes it. */
  onGranted?(vpnId: string): void;
  /** The bandwidth plan changed the VPN's rate (bits/s, 0 = unlimited) or cut it. */
  onRate?(vpnId: string, rate: number, cut: boolean): void;
  /** A new epoch of a VPN's key is installed. */
  onEpoch?(vpnId: string, epoch: number): void;
}

export class TerminalAgent {
  private _state: TerminalState = 'stopped';
  private readonly session: DeviceSession;
  /** Resumption tickets, by user: a re-join needs no password. */
  readonly tickets: TicketWallet;
  /** The VPNs of the last join, whose topics the next start's CONNECT subscribes (decision 137). */
  private readonly joined: JoinedVpns;
  config: Record<string, unknown> | null = null;
  readonly vpns = new Map<string, { id: string; protocol: string; port: number; keys: MemberKeys }>();
  /** Payloads not sent by reason: 'cut' (the plan cut the VPN), 'rate' (over its rate). */
  readonly unsent = new Map<string, number>();
  /** Frames dropped by reason (replay, auth, epoch...). */
  readonly droppedFrames = new Map<string, number>();

  constructor(readonly bundle: Bundle, private readonly p: Platform, private readonly o: TerminalOptions = {}) {
    this.session = new DeviceSession(bundle, p, o);
    const secrets = p.secrets ?? new MemorySecretStore();
    this.tickets = new TicketWallet(secrets, p.log);
    this.joined = new JoinedVpns(secrets);
  }

  /** A VPN's two topics for us: frames to us, frames to all. */
  private vpnTopics(vpnId: string): string[] {
    return [topics.vpnMember(vpnId, this.bundle.id), topics.vpnAll(vpnId)];
  }

  /** How often its liveness clock has woken (a diagnostic: it sleeps while nothing could be sent). */
  get clockWakes(): number {
    return this.session.clockWakes;
  }

  get state(): TerminalState {
    return this._state;
  }

  private to(s: TerminalState): void {
    this._state = s;
    this.o.onState?.(s);
  }

  private need(...states: TerminalState[]): void {
    if (!states.includes(this._state)) throw new KagiError('argument', `agent is ${this._state}, needs ${states.join(' or ')}`);
  }

  async start(): Promise<void> {
    this.need('stopped');
    // The last join's VPNs in the CONNECT's SUBSCRIBE: a re-join then sends none (decision 137).
    const last = await this.joined.recall();
    await this.session.start(
      {
        onRequest: (m) => this.onRequest(m),
        onFrame: (vpn, target, p) => this.onFrame(vpn, target, p),
        onKeys: (b) => this.onKeys(b),
        held: () => this.held(),
      },
      last.flatMap((id) => this.vpnTopics(id)),
    );
    this.to('unconfigured');
  }

  /** S101–S104: config request with MAC and device credential. */
  async configure(): Promise<Record<string, unknown>> {
    this.need('unconfigured');
    const r = await this.session.ask('config.request', 'request', { mac: this.bundle.mac });
    this.config = asBody(asBody(r.body).config);
    this.to('configured');
    return this.config;
  }

  /**
   * Whether to send a config request at start: only an internal terminal
   * started with no user to join (the patent's S101–S104 alone: the device
   * reports and gets its config). A join does everything the config
   * request does (the device's credential and MAC checked, the config
   * channel renewed, where it is recorded), so a terminal that joins at
   * once, on a ticket (decision 122) or with the password (decision 138),
   * sends the join alone. An external terminal never configures (S301).
   */
  needsConfig(user: string | undefined): boolean {
    return this.bundle.kind !== 'external' && user === undefined;
  }

  /**
   * S105–S110: user join; keys arrive (a keys.update on the join's own keys
   * channel, decision 134) before the answer. From `unconfigured` too: the
   * join stands in for the config request (needsConfig).
   * With a ticket for `user` no password is sent (or needed); one is
   * needed for the first join, and again only if the ticket is refused.
   */
  async join(user: string, password?: string): Promise<VpnInfo[]> {
    this.need('unconfigured', 'configured', 'joined');
    const before = this._state;
    this.to('joining');
    try {
      let joined: VpnInfo[] = [];
      // Keys come before the answer; a "you are out" notice of an earlier
      // removal can still cross the join and drop them (a device evicted in
      // an outage, joining again). The join is an upsert: ask again.
      for (let attempt = 1; ; attempt++) {
        // The MAC goes with every join: a join from unconfigured has no
        // config request to carry it, and the auth server checks it as for
        // one (decisions 122, 138).
        let r: JoinAnswer;
        try {
          r = await this.tickets.join(user, password, (c) => this.session.ask('join.request', 'join', { user, mac: this.bundle.mac, ...c }));
        } catch (e) {
          // The key server had no acknowledgement of our keys (a delivery
          // lost on the way, while we waited on with copies of the request,
          // decision 130): the join is an upsert, and the refusal carried the
          // ticket auth rotated, which the wallet keeps. Ask again.
          if (!(e instanceof RefusedError && e.code === 'keys') || attempt >= 3) throw e;
          this.p.log('warn', `${this.bundle.id}: ${e.message}; joining again`);
          continue;
        }
        joined = list(asBody(r.body), 'vpns').map((x) => {
          const v = asBody(x);
          this.vpns.get(str(v, 'id', 64))?.keys.shaper.set(typeof v.rate === 'number' ? v.rate : 0, v.cut === true, this.p.now());
          return { id: str(v, 'id', 64), protocol: str(v, 'protocol', 8), port: num(v, 'port'), epoch: num(v, 'epoch') };
        });
        const keyless = joined.filter((v) => !this.vpns.has(v.id)).map((v) => v.id);
        if (keyless.length === 0) break;
        if (attempt >= 3) throw new KagiError('field', `joined ${keyless.join(', ')} but no keys for it arrived`);
        this.p.log('warn', `${this.bundle.id}: joined ${keyless.join(', ')} but its keys were taken back meanwhile; joining again`);
      }
      // Every VPN's two topics in one SUBSCRIBE (one round trip per join),
      // none when the CONNECT's SUBSCRIBE had them granted (decision 137).
      await this.session.subscribe(...joined.flatMap((v) => this.vpnTopics(v.id)));
      await this.remember(joined.map((v) => v.id));
      this.to('joined');
      return joined;
    } catch (e) {
      this.to(before);
      throw e;
    }
  }

  /** Keep the joined VPNs for the next start; a store that fails costs that start its SUBSCRIBE saving, not the join. */
  private async remember(ids: string[]): Promise<void> {
    try {
      await this.joined.remember(ids);
    } catch (e) {
      this.p.log('warn', `${this.bundle.id}: could not keep the joined VPNs: ${(e as Error).message}`);
    }
  }

  /** S405: the config server says we are out of a VPN: forget its keys. */
  private onNotice(m: Incoming): Reply {
    const b = asBody(m.body);
    const vpn = str(b, 'vpn', 64);
    if (str(b, 'op', 16) === 'rate' && str(b, 'member', 64) === this.bundle.id) {
      this.vpns.get(vpn)?.keys.shaper.set(num(b, 'rate'), b.cut === true, this.p.now());
      this.p.log('info', `${this.bundle.id}: ${vpn} ${b.cut === true ? 'cut by the bandwidth plan' : `may send ${num(b, 'rate') || 'unlimited'} bit/s`}`);
      this.o.onRate?.(vpn, num(b, 'rate'), b.cut === true);
    }
    if (str(b, 'op', 16) === 'granted' && str(b, 'member', 64) === this.bundle.id) this.o.onGranted?.(vpn);
    const held = this.vpns.get(vpn);
    if (str(b, 'op', 16) === 'left' && str(b, 'member', 64) === this.bundle.id && held && this.vpns.delete(vpn)) {
      held.keys.destroy();
      const reason = (typeof b.reason === 'string' ? b.reason : 'revoked') as LeftReason;
      this.p.log('info', `${this.bundle.id}: out of ${vpn} (${reason}), keys dropped`);
      if (this.vpns.size === 0 && this._state === 'joined') this.to('configured');
      this.o.onLeft?.(vpn, reason);
    }
    return { type: 'notice.ack', body: {} };
  }

  private onRequest(m: Incoming): Promise<Reply | undefined> {
    if (m.env.from === 'config' && m.env.type === 'notice') return Promise.resolve(this.onNotice(m));
    return Promise.resolve(undefined);
  }

  /** 3a: keys from the key server (delivered or updated); the ack body. */
  private onKeys(b: Body): Body {
    if (this._state !== 'joining' && this._state !== 'joined') throw new KagiError('unexpected', `keys while ${this._state}`);
    const now = this.p.now();
    const released: [string, OpenedFrame][] = [];
    for (const x of list(b, 'vpns')) {
      const v = asBody(x);
      const id = str(v, 'id', 64);
      let s = this.vpns.get(id);
      if (!s) {
        s = { id, protocol: str(v, 'protocol', 8), port: num(v, 'port'), keys: new MemberKeys(this.p.crypto, id, this.bundle.id, this.o.graceMs ?? 30_000) };
        this.vpns.set(id, s);
      }
      const epoch = num(v, 'epoch');
      const before = s.keys.epoch;
      for (const f of s.keys.install(epoch, bytes(v, 'key', 32), now, (e) => this.dropped(id, e))) released.push([id, f]);
      if (epoch > before) this.o.onEpoch?.(id, epoch);
    }
    for (const [id, f] of released) this.deliver(id, f);
    return { member: this.bundle.id, vpns: [...this.vpns.values()].map((v) => ({ id: v.id, epoch: v.keys.epoch })) };
  }

  private held(): Held[] {
    if (this.vpns.size === 0) return [];
    return [{ member: this.bundle.id, vpns: [...this.vpns.values()].map((v) => ({ id: v.id, epoch: v.keys.epoch })) }];
  }

  /** VPNs and the epochs we hold. */
  epochs(): Record<string, number> {
    return Object.fromEntries([...this.vpns.values()].map((v) => [v.id, v.keys.epoch]));
  }

  /** 4d: seal one payload to a member (or 'all') of a joined VPN. */
  async send(vpnId: string, to: string, payload: Uint8Array): Promise<void> {
    this.need('joined', 'joining');
    const v = this.vpns.get(vpnId);
    if (!v) throw new KagiError('argument', `not a member of ${vpnId}`);
    const topic = to === 'all' ? topics.vpnAll(vpnId) : topics.vpnMember(vpnId, to);
    const dropped = await v.keys.send(payload, to, () => this.p.now(), (f) => this.session.publish(topic, f));
    if (dropped) this.unsent.set(dropped, (this.unsent.get(dropped) ?? 0) + 1);
  }

  private onFrame(vpnId: string, target: string, payload: Uint8Array): void {
    const v = this.vpns.get(vpnId);
    if (!v) return this.dropped(vpnId, new KagiError('epoch', `no keys for ${vpnId}`));
    // We subscribe to our own topic and 'all' only; anything else is not ours.
    if (target !== this.bundle.id && target !== ALL_MEMBERS) return this.dropped(vpnId, new KagiError('unexpected', `a frame on the topic of ${target}`));
    const r = v.keys.receive(payload, target, this.p.now(), (e) => this.dropped(vpnId, e));
    if (r === 'ahead') this.session.fetch(this.bundle.id, vpnId); // a rekey we have not seen (yet)
    else if (r) this.deliver(vpnId, r);
  }

  private deliver(vpnId: string, f: OpenedFrame): void {
    if (f.sender === this.bundle.id) return; // our own frame on the 'all' topic
    this.o.onData?.(vpnId, f.sender, f.payload);
  }

  private dropped(vpnId: string, e: KagiError): void {
    this.droppedFrames.set(e.code, (this.droppedFrames.get(e.code) ?? 0) + 1);
    this.p.log('debug', `${this.bundle.id}: dropped frame on ${vpnId}: ${e.message}`);
  }

  /**
   * Stop. A joined agent leaves its VPNs first (the control plane runs the
   * leave steps at once); `leave: false` only disconnects, as a crash would.
   */
  async stop(o: { leave?: boolean } = {}): Promise<void> {
    const leave = (o.leave ?? true) && this._state === 'joined';
    await this.session.stop({ leave });
    if (leave) await this.remember([]);
    for (const v of this.vpns.values()) v.keys.destroy();
    this.vpns.clear();
    this.to('stopped');
  }
}
