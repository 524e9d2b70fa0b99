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
import type { Incoming, Reply } from '../protocol/peer.js';
import { topics } from '../protocol/topics.js';
import { asBody, bytes, list, num, str } from '../protocol/body.js';
import { FrameReceiver, FrameSender } from '../protocol/vpn-frame.js';
import type { Bundle } from './bundle.js';
import type { Platform } from './platform.js';
import { DeviceSession } from './session.js';
export { RefusedError } from './session.js';

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

export class TerminalAgent {
  private _state: TerminalState = 'stopped';
  private readonly session: DeviceSession;
  config: Record<string, unknown> | null = null;
  readonly vpns = new Map<string, VpnInfo & { tx: FrameSender; rx: FrameReceiver }>();
  /** Frames dropped by reason (replay, auth, epoch...). */
  readonly droppedFrames = new Map<string, number>();

  constructor(readonly bundle: Bundle, private readonly p: Platform, private readonly o: TerminalOptions = {}) {
    this.session = new DeviceSession(bundle, p, o);
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
    await this.session.start({ onRequest: (m) => this.onRequest(m), onFrame: (vpn, _target, p) => this.onFrame(vpn, p) });
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
   * S105–S110: user join; keys arrive (keys.deliver) before the answer.
   * An external terminal (S301) has no config step: it joins directly.
   */
  async join(user: string, password: string): Promise<VpnInfo[]> {
    if (this.bundle.kind === 'external') this.need('unconfigured', 'configured', 'joined');
    else this.need('configured', 'joined');
    const before = this._state;
    this.to('joining');
    try {
      const r = await this.session.ask('join.request', 'join', { user, password });
      const joined = list(asBody(r.body), 'vpns').map((x) => {
        const v = asBody(x);
        return { id: str(v, 'id', 64), protocol: str(v, 'protocol', 8), port: num(v, 'port'), epoch: num(v, 'epoch') };
      });
      for (const v of joined) {
        if (!this.vpns.has(v.id)) throw new KagiError('field', `joined ${v.id} but no keys for it arrived`);
        await this.session.subscribe(topics.vpnMember(v.id, this.bundle.id));
        await this.session.subscribe(topics.vpnAll(v.id));
      }
      this.to('joined');
      return joined;
    } catch (e) {
      this.to(before);
      throw e;
    }
  }

  /** S405: the config server says we are out of a VPN: forget its keys. */
  private onNotice(m: Incoming): Reply {
    const b = asBody(m.body);
    if (str(b, 'op', 16) === 'left' && str(b, 'member', 64) === this.bundle.id && this.vpns.delete(str(b, 'vpn', 64))) {
      this.p.log('info', `${this.bundle.id}: out of ${str(b, 'vpn', 64)}, keys dropped`);
    }
    return { type: 'notice.ack', body: {} };
  }

  /** 3a: keys from the key server, sealed to us; acknowledge them. */
  private async onRequest(m: Incoming): Promise<Reply | undefined> {
    if (m.env.from === 'config' && m.env.type === 'notice') return this.onNotice(m);
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
    await this.session.publish(to === 'all' ? topics.vpnAll(vpnId) : topics.vpnMember(vpnId, to), v.tx.seal(payload));
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
    await this.session.stop();
    this.to('stopped');
  }
}
