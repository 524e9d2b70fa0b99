/**
 * Relay node (patent 6): its own config (6a) and keys (6b); for each
 * downstream port a state machine (6c):
 *   RESTRICTED  only the plaintext terminal's config and join frames pass;
 *               the relay seals them toward the services on the port's
 *               behalf ({ id, port }); data frames are dropped and counted.
 *   FORWARDING  after the key server registered the VPN key for the port:
 *               data of the port's VPNs is sealed out and opened in.
 *   → RESTRICTED again when the config server says the terminal is out of
 *               its last VPN (VPN deleted, member revoked or evicted: S405).
 * The relay pings each FORWARDING port and, when the config server polls
 * it (S401), vouches only for terminals that answered recently (S402): a
 * dead or frozen terminal behind a live relay is still evicted.
 * Ports are byte pipes (a TCP connection on Node, a UART on a board).
 */
import { KagiError, isKagiError } from '../protocol/errors.js';
import type { Incoming, Reply } from '../protocol/peer.js';
import { topics } from '../protocol/topics.js';
import { asBody, bytes, list, num, str, type Body } from '../protocol/body.js';
import { PortFrameDecoder, encodePortFrame, type PortFrame, type PortFrameType } from '../protocol/port-frame.js';
import type { Bundle } from './bundle.js';
import type { Platform } from './platform.js';
import { DeviceSession, type SessionOptions, RefusedError, type Held, type ComeBackLater } from './session.js';
import { MemberKeys } from './vpn-keys.js';
import { detach } from './detach.js';
import { MemorySecretStore, TicketWallet } from './tickets.js';

export type PortState = 'RESTRICTED' | 'FORWARDING';

/** The relay's side of one port's byte pipe. */
export interface PortIO {
  write(bytes: Uint8Array): void;
}

export class RelayPort {
  state: PortState = 'RESTRICTED';
  /** The plaintext terminal that configured itself on this port. */
  terminal: string | null = null;
  io: PortIO | null = null;
  decoder = new PortFrameDecoder();
  readonly vpns = new Map<string, MemberKeys>();
  /** When the port last sent anything (ms): its terminal is alive. */
  lastHeard = 0;
  readonly dropped = new Map<string, number>();
  /** A raw port (legacy device, no agent) takes VPN data itself. */
  onData: ((vpn: string, from: string, bytes: Uint8Array) => void) | null = null;
  constructor(readonly name: string) {}
}

export interface RelayOptions {
  timeoutMs?: number;
  attempts?: number;
  brokerWaitMs?: number;
  /** Told to come back later (throttled, busy): the agent waits that long with jitter and asks again by itself. */
  onWait?: SessionOptions['onWait'];
  graceMs?: number;
  onPortState?(port: string, state: PortState, terminal: string | null): void;
}

export class RelayAgent {
  readonly session: DeviceSession;
  /** Its ports' terminals' resumption tickets, by TERMINAL/USER. */
  readonly tickets: TicketWallet;
  readonly ports = new Map<string, RelayPort>();
  config: Body | null = null;
  private pinger: ReturnType<typeof setInterval> | null = null;

  constructor(readonly bundle: Bundle, portNames: string[], private readonly p: Platform, private readonly o: RelayOptions = {}) {
    this.session = new DeviceSession(bundle, p, o);
    this.tickets = new TicketWallet(p.secrets ?? new MemorySecretStore(), p.log);
    for (const n of portNames) this.ports.set(n, new RelayPort(n));
  }

  /** Connect and get the relay's own config (6a). */
  async start(): Promise<void> {
    await this.session.start({
      onRequest: (m) => this.onRequest(m),
      onFrame: (v, target, payload) => this.onFrame(v, target, payload),
      onKeys: (b) => this.onKeys(b),
      held: () => this.held(),
    });
    const r = await this.session.ask('config.request', 'request', { mac: this.bundle.mac });
    this.config = asBody(asBody(r.body).config);
    this.pinger = setInterval(() => this.ping(), this.pingMs());
  }

  /** Ping twice per poll interval, so a poll always sees a fresh answer. */
  private pingMs(): number {
    return Math.max(100, Math.floor(this.session.liveness.pollIntervalMs / 2));
  }

  private ping(): void {
    for (const p of this.ports.values()) if (p.state === 'FORWARDING' && p.io && !p.onData) this.reply(p, 'ping', {});
  }

  /** A port's terminal is alive if it answered within a poll interval and a ping (raw ports: the relay is its agent). */
  private alive(p: RelayPort): boolean {
    return p.onData !== null || this.p.now() - p.lastHeard <= this.session.liveness.pollIntervalMs + this.pingMs();
  }

  /** S402 for the terminals behind us: FORWARDING ports whose terminal is alive. */
  private held(): Held[] {
    const out: Held[] = [];
    for (const p of this.ports.values()) {
      if (p.state !== 'FORWARDING' || !p.terminal || !this.alive(p)) continue;
      out.push({ member: p.terminal, vpns: [...p.vpns.entries()].map(([id, k]) => ({ id, epoch: k.epoch })) });
    }
    return out;
  }

  private port(name: string): RelayPort {
    const p = this.ports.get(name);
    if (!p) throw new KagiError('argument', `no port ${name}`);
    return p;
  }

  private drop(p: RelayPort, reason: string, detail: string): void {
    p.dropped.set(reason, (p.dropped.get(reason) ?? 0) + 1);
    this.p.log('debug', `${this.bundle.id}/${p.name}: dropped (${reason}) ${detail}`);
  }

  private reply(p: RelayPort, type: PortFrameType, body: Record<string, unknown>): void {
    p.io?.write(encodePortFrame({ type, body }));
  }

  private setState(p: RelayPort, s: PortState): void {
    if (p.state === s) return;
    p.state = s;
    this.p.log('info', `${this.bundle.id}/${p.name}: ${s}${p.terminal ? ` (${p.terminal})` : ''}`);
    this.o.onPortState?.(p.name, s, p.terminal);
  }

  /** A plaintext terminal connected to a port (replaces an earlier link). */
  attach(name: string, io: PortIO): void {
    const p = this.port(name);
    p.io = io;
    p.decoder = new PortFrameDecoder();
  }

  /**
   * The terminal's link closed (it shut down, or the cable is out): an
   * explicit leave for it, and the port is RESTRICTED until it configures
   * and joins again.
   */
  detach(name: string, io: PortIO): void {
    const p = this.port(name);
    if (p.io !== io) return;
    p.io = null;
    if (p.state !== 'FORWARDING' || !p.terminal || p.onData) return;
    const held = { member: p.terminal, vpns: [...p.vpns.entries()].map(([id, k]) => ({ id, epoch: k.epoch })) };
    for (const k of p.vpns.values()) k.destroy();
    p.vpns.clear();
    this.setState(p, 'RESTRICTED');
    detach(this.session.leave([held]), `${this.bundle.id}: leave for a port's terminal`, this.p.log, 'debug', `${p.name}: ${held.member}`);
  }

  /** Bytes from a port's pipe; bad frames are dropped, the port goes on. */
  input(name: string, chunk: Uint8Array): void {
    const p = this.port(name);
    p.lastHeard = this.p.now();
    for (const f of p.decoder.push(chunk)) {
      if (f instanceof KagiError) this.drop(p, f.code, f.message);
      else detach(this.onPortFrame(p, f).catch((e) => this.drop(p, isKagiError(e) ? e.code : 'error', (e as Error).message)), `${this.bundle.id}: port frame`, this.p.log, 'debug', p.name);
    }
  }

  private async onPortFrame(p: RelayPort, f: PortFrame): Promise<void> {
    switch (f.type) {
      case 'config':
        return this.portConfig(p, f.body);
      case 'join':
        return this.portJoin(p, f.body);
      case 'data':
        return this.portData(p, f.body);
      case 'pong':
        return; // lastHeard is already updated
      default:
        return this.drop(p, 'type', `${f.type} is not for the relay`);
    }
  }

  /** S201–S204: config request for the terminal on this port. */
  async configurePort(name: string, id: string, mac: string): Promise<Body> {
    const p = this.port(name);
    const r = await this.session.ask('config.request', 'request', { mac, onBehalf: { id, port: p.name } });
    p.terminal = id;
    return asBody(asBody(r.body).config);
  }

  /** S205–S212: user join for the port's terminal; keys come to us for the port. */
  async joinPort(name: string, user: string, password?: string): Promise<Body[]> {
    const p = this.port(name);
    if (!p.terminal) throw new RefusedError('configure first');
    const terminal = p.terminal;
    // The relay keeps the terminal's ticket: the terminal's later joins need no password either.
    // Told to come back later, the relay waits and asks again by itself;
    // the terminal hears why it waits (and keeps waiting for the answer).
    const onBehalf = { id: terminal, port: p.name };
    const waiting = (w: ComeBackLater) => this.reply(p, 'waiting', { code: w.code, reason: w.reason, retryAfter: w.retryAfter });
    const r = await this.tickets.join(`${terminal}/${user}`, password, (c) => this.session.ask('join.request', 'join', { user, ...c, onBehalf }, waiting));
    const vpns = list(asBody(r.body), 'vpns').map((x) => asBody(x));
    for (const v of vpns) {
      const k = p.vpns.get(str(v, 'id', 64));
      if (!k) throw new KagiError('field', `no keys for ${String(v.id)} reached port ${p.name}`);
      k.shaper.set(typeof v.rate === 'number' ? v.rate : 0, v.cut === true, this.p.now());
    }
    // Every VPN's two topics for this terminal in one SUBSCRIBE.
    await this.session.subscribe(...vpns.flatMap((v) => [topics.vpnMember(str(v, 'id', 64), terminal), topics.vpnAll(str(v, 'id', 64))]));
    this.setState(p, 'FORWARDING');
    return vpns;
  }

  /** Run a request for the port and answer on its pipe; refusals become 'refused'. */
  private async answer(p: RelayPort, type: PortFrameType, run: () => Promise<Record<string, unknown>>): Promise<void> {
    try {
      this.reply(p, type, await run());
    } catch (e) {
      if (!(e instanceof RefusedError)) throw e;
      this.reply(p, 'refused', { reason: e.message });
    }
  }

  private portConfig(p: RelayPort, b: Body): Promise<void> {
    return this.answer(p, 'configured', async () => ({ config: await this.configurePort(p.name, str(b, 'id', 64), str(b, 'mac', 32)) }));
  }

  private portJoin(p: RelayPort, b: Body): Promise<void> {
    const password = b.password === undefined ? undefined : str(b, 'password', 1024);
    return this.answer(p, 'joined', async () => ({ vpns: await this.joinPort(p.name, str(b, 'user', 64), password) }));
  }

  private portData(p: RelayPort, b: Body): Promise<void> {
    return this.sendFrom(p.name, str(b, 'vpn', 64), str(b, 'peer', 64), bytes(b, 'bytes'));
  }

  /** 4d on the port's behalf: seal its data out, only when FORWARDING. */
  async sendFrom(name: string, vpn: string, peer: string, data: Uint8Array): Promise<void> {
    const p = this.port(name);
    const v = p.vpns.get(vpn);
    if (p.state !== 'FORWARDING' || !v) return this.drop(p, 'restricted', `data for ${vpn} while ${p.state}`);
    const topic = peer === 'all' ? topics.vpnAll(vpn) : topics.vpnMember(vpn, peer);
    const dropped = await v.send(data, peer, () => this.p.now(), (f) => this.session.publish(topic, f));
    if (dropped) this.drop(p, dropped, `data for ${vpn}: ${dropped === 'cut' ? 'the VPN is cut' : 'over its rate'}`);
  }

  /** VPN frames for the terminals behind our ports: open and hand down. */
  private onFrame(vpnId: string, target: string, payload: Uint8Array): void {
    for (const p of this.ports.values()) {
      const v = p.vpns.get(vpnId);
      if (!v || !p.terminal || (target !== 'all' && target !== p.terminal)) continue;
      if (p.state !== 'FORWARDING') {
        this.drop(p, 'restricted', `frame on ${vpnId} while RESTRICTED`);
        continue;
      }
      const f = v.receive(payload, target, this.p.now(), (e) => this.drop(p, e.code, `frame on ${vpnId}: ${e.message}`));
      if (f === 'ahead') this.session.fetch(p.terminal, vpnId);
      else if (f) this.hand(p, vpnId, f.sender, f.payload);
    }
  }

  private hand(p: RelayPort, vpnId: string, sender: string, payload: Uint8Array): void {
    if (sender === p.terminal) return; // its own frame on the 'all' topic
    if (p.onData) p.onData(vpnId, sender, payload);
    else this.reply(p, 'data', { vpn: vpnId, peer: sender, bytes: payload });
  }

  private onRequest(m: Incoming): Promise<Reply | undefined> {
    if (m.env.from === 'config' && m.env.type === 'notice') return Promise.resolve(this.onNotice(m));
    return Promise.resolve(undefined);
  }

  /** 6b: keys for a port's terminal (delivered or updated); the ack body. */
  private onKeys(b: Body): Body {
    if (b.port === undefined) throw new KagiError('field', 'keys without a port: the relay itself joins no VPN');
    const p = this.port(str(b, 'port', 64));
    const member = str(b, 'member', 64);
    if (p.terminal !== member) throw new KagiError('field', `keys for ${member}, but port ${p.name} has ${p.terminal}`);
    const now = this.p.now();
    for (const x of list(b, 'vpns')) {
      const v = asBody(x);
      const id = str(v, 'id', 64);
      let s = p.vpns.get(id);
      if (!s) {
        s = new MemberKeys(this.p.crypto, id, member, this.o.graceMs ?? 30_000);
        p.vpns.set(id, s);
      }
      for (const f of s.install(num(v, 'epoch'), bytes(v, 'key', 32), now, (e) => this.drop(p, e.code, e.message))) this.hand(p, id, f.sender, f.payload);
    }
    return { port: p.name, member, vpns: [...p.vpns.entries()].map(([id, s]) => ({ id, epoch: s.epoch })) };
  }

  /** S405: a terminal is out of a VPN: forget the keys, restrict the port. */
  private onNotice(m: Incoming): Reply {
    const b = asBody(m.body);
    const vpn = str(b, 'vpn', 64);
    const member = str(b, 'member', 64);
    if (b.op === 'rate') {
      for (const p of this.ports.values()) if (p.terminal === member) p.vpns.get(vpn)?.shaper.set(num(b, 'rate'), b.cut === true, this.p.now());
      return { type: 'notice.ack', body: {} };
    }
    const reason = typeof b.reason === 'string' ? b.reason : 'revoked';
    for (const p of this.ports.values()) {
      const keys = p.vpns.get(vpn);
      if (p.terminal !== member || !keys || !p.vpns.delete(vpn)) continue;
      keys.destroy();
      this.p.log('info', `${this.bundle.id}/${p.name}: ${member} out of ${vpn} (${reason})`);
      if (p.vpns.size === 0) this.setState(p, 'RESTRICTED');
      this.reply(p, 'restricted', { vpn, reason });
    }
    return { type: 'notice.ack', body: {} };
  }

  status(): { port: string; state: PortState; terminal: string | null; vpns: string[]; dropped: Record<string, number> }[] {
    return [...this.ports.values()].map((p) => ({ port: p.name, state: p.state, terminal: p.terminal, vpns: [...p.vpns.keys()], dropped: Object.fromEntries(p.dropped) }));
  }

  /** Stop; the terminals behind FORWARDING ports leave their VPNs first unless `leave: false`. */
  async stop(o: { leave?: boolean } = {}): Promise<void> {
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = null;
    await this.session.stop(o);
    for (const p of this.ports.values()) {
      for (const k of p.vpns.values()) k.destroy();
      p.vpns.clear();
    }
  }
}
