/**
 * Crypto terminal agent (patent 4): config request with MAC + device
 * credential (4a), user join (4b), key acquisition (4c), VPN traffic (4d).
 *
 * States and the only transitions allowed:
 *   stopped → unconfigured        start()
 *   unconfigured → configured     configure() got its config
 *   configured → joining          join()
 *   joining → joined              join.response (keys arrived before it)
 *   joining → configured          join refused or given up
 *   any → stopped                 stop()
 * Each operation checks the state it requires first.
 */
import { KagiError, isKagiError } from '../protocol/errors.js';
import { Peer, type Incoming, type Reply } from '../protocol/peer.js';
import { topics, parseTopic } from '../protocol/topics.js';
import { asBody, bytes, list, num, str } from '../protocol/body.js';
import { FrameReceiver, FrameSender } from '../protocol/vpn-frame.js';
import type { Bundle } from './bundle.js';
import type { Link, Platform } from './platform.js';

export type TerminalState = 'stopped' | 'unconfigured' | 'configured' | 'joining' | 'joined';

export interface VpnInfo {
  id: string;
  protocol: string;
  port: number;
  epoch: number;
}

export interface TerminalOptions {
  timeoutMs?: number;
  /** Attempts per request before giving up (control plane down, lost messages). */
  attempts?: number;
  graceMs?: number;
  onData?(vpnId: string, from: string, payload: Uint8Array): void;
  onState?(s: TerminalState): void;
}

/** A refusal from the control plane, with its reason. */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
}

export class TerminalAgent {
  private _state: TerminalState = 'stopped';
  private link: Link | null = null;
  private peer: Peer | null = null;
  config: Record<string, unknown> | null = null;
  readonly vpns = new Map<string, VpnInfo & { tx: FrameSender; rx: FrameReceiver }>();
  /** Frames dropped by reason (replay, auth, epoch...). */
  readonly droppedFrames = new Map<string, number>();

  constructor(readonly bundle: Bundle, private readonly p: Platform, private readonly o: TerminalOptions = {}) {}

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
    const b = this.bundle;
    this.peer = new Peer({
      crypto: this.p.crypto,
      id: b.id,
      secretKey: b.secretKey,
      numbers: this.p.numbers,
      transport: { publish: (t, m) => this.link!.publish(t, m) },
      keyOf: async (id) => (id === 'auth' || id === 'config' || id === 'keys' ? b.services[id] : undefined),
      replyTopic: (id) => topics.service(id as 'keys', 'reply'),
      onRequest: (m) => this.onRequest(m),
      log: this.p.log,
    });
    this.link = await this.p.connect({
      clientId: b.id,
      secretKey: b.secretKey,
      brokerPublicKey: b.services.broker,
      subscriptions: [topics.inbox(b.id)],
      onMessage: (topic, payload) => this.onMessage(topic, payload),
    });
    this.to('unconfigured');
  }

  /** Send a request to the auth server through the config server, retrying. */
  private async ask(type: 'config.request' | 'join.request', op: string, body: Record<string, unknown>): Promise<Reply> {
    const attempts = this.o.attempts ?? 5;
    for (let i = 1; ; i++) {
      try {
        const r = await this.peer!.request({ to: 'auth', pkR: this.bundle.services.auth, topic: topics.service('config', op), type, body, replyFrom: 'config', timeoutMs: this.o.timeoutMs ?? 10_000 });
        r.secrets.destroy();
        if (r.type === 'error') throw new RefusedError(String(asBody(r.body).reason));
        return r;
      } catch (e) {
        if (!isKagiError(e, 'unexpected') || i >= attempts || this._state === 'stopped') throw e;
        this.p.log('info', `${this.bundle.id}: no answer to ${type} (attempt ${i}/${attempts}), retrying`);
      }
    }
  }

  /** S101–S104: config request with MAC and device credential. */
  async configure(): Promise<Record<string, unknown>> {
    this.need('unconfigured');
    const r = await this.ask('config.request', 'request', { mac: this.bundle.mac });
    this.config = asBody(asBody(r.body).config);
    this.to('configured');
    return this.config;
  }

  /** S105–S110: user join; keys arrive (keys.deliver) before the answer. */
  async join(user: string, password: string): Promise<VpnInfo[]> {
    this.need('configured', 'joined');
    const before = this._state;
    this.to('joining');
    try {
      const r = await this.ask('join.request', 'join', { user, password });
      const joined = list(asBody(r.body), 'vpns').map((x) => {
        const v = asBody(x);
        return { id: str(v, 'id', 64), protocol: str(v, 'protocol', 8), port: num(v, 'port'), epoch: num(v, 'epoch') };
      });
      for (const v of joined) {
        if (!this.vpns.has(v.id)) throw new KagiError('field', `joined ${v.id} but no keys for it arrived`);
        await this.link!.subscribe(topics.vpnMember(v.id, this.bundle.id));
        await this.link!.subscribe(topics.vpnAll(v.id));
      }
      this.to('joined');
      return joined;
    } catch (e) {
      this.to(before === 'joined' ? 'joined' : 'configured');
      throw e;
    }
  }

  /** 3a: keys from the key server, sealed to us; acknowledge them. */
  private async onRequest(m: Incoming): Promise<Reply | undefined> {
    if (m.env.from !== 'keys' || m.env.type !== 'keys.deliver') return undefined;
    if (this._state !== 'joining' && this._state !== 'joined') return undefined;
    const now = this.p.now();
    for (const x of list(asBody(m.body), 'vpns')) {
      const v = asBody(x);
      const id = str(v, 'id', 64);
      const epoch = num(v, 'epoch');
      const key = bytes(v, 'key', 32);
      let s = this.vpns.get(id);
      if (!s) {
        s = { id, protocol: str(v, 'protocol', 8), port: num(v, 'port'), epoch: -1, tx: new FrameSender(this.p.crypto, id, this.bundle.id), rx: new FrameReceiver(this.p.crypto, id, this.o.graceMs ?? 30_000) };
        this.vpns.set(id, s);
      }
      if (epoch > s.epoch) {
        s.tx.setKey(epoch, key);
        s.rx.setKey(epoch, key, now);
        s.epoch = epoch;
      }
    }
    return { type: 'keys.ack', body: { vpns: [...this.vpns.values()].map((v) => ({ id: v.id, epoch: v.epoch })) } };
  }

  /** 4d: seal one payload to a member (or 'all') of a joined VPN. */
  async send(vpnId: string, to: string, payload: Uint8Array): Promise<void> {
    this.need('joined', 'joining');
    const v = this.vpns.get(vpnId);
    if (!v) throw new KagiError('argument', `not a member of ${vpnId}`);
    await this.link!.publish(to === 'all' ? topics.vpnAll(vpnId) : topics.vpnMember(vpnId, to), v.tx.seal(payload));
  }

  private onMessage(topic: string, payload: Uint8Array): void {
    const t = parseTopic(topic);
    if (t?.area === 'vpn') return this.onFrame(t.a, payload);
    void this.peer?.receive(payload).catch((e) => this.p.log('warn', `${this.bundle.id}: ${(e as Error).message}`));
  }

  private onFrame(vpnId: string, payload: Uint8Array): void {
    const v = this.vpns.get(vpnId);
    try {
      if (!v) throw new KagiError('epoch', `no keys for ${vpnId}`);
      const f = v.rx.open(payload, this.p.now());
      if (f.sender === this.bundle.id) return; // our own frame on the 'all' topic
      this.o.onData?.(vpnId, f.sender, f.payload);
    } catch (e) {
      if (!isKagiError(e)) throw e;
      this.droppedFrames.set(e.code, (this.droppedFrames.get(e.code) ?? 0) + 1);
      this.p.log('debug', `${this.bundle.id}: dropped frame on ${vpnId}: ${e.message}`);
    }
  }

  async stop(): Promise<void> {
    this.peer?.cancelAll('agent stopping');
    await this.link?.close();
    this.link = null;
    this.to('stopped');
  }
}
