/**
 * TCP tunnels over a terminal's VPNs (DESIGN: the VPN's protocol/port is the
 * service it carries). `--listen VPN=LOCALPORT:PEER` accepts TCP on
 * 127.0.0.1:LOCALPORT and carries each connection to device PEER, whose
 * agent connects it to its target for that VPN (127.0.0.1:<VPN port> unless
 * `--target VPN=HOST:PORT`). Close and reset propagate both ways.
 *
 * While the broker is away a connection holds (device/stream.ts): its bytes
 * wait in the stream's window and the socket is paused, for up to
 * `holdMs` (`kagi agent --tunnel-hold`); past that, the TCP connection is
 * reset. When the agent loses a VPN's keys (evicted, revoked), every
 * connection over that VPN is reset at once (`abort`). Listeners stay up
 * throughout: a connection accepted while the agent is not (yet) in the VPN
 * holds like one during an outage.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import { StreamMux, type Stream } from '../../device/stream.js';
import type { TerminalAgent } from '../../device/terminal.js';
import { detach, type DetachLog } from '../../device/detach.js';
import { listenOn } from './bind.js';

export interface ListenSpec {
  vpn: string;
  localPort: number;
  peer: string;
}

export interface TargetSpec {
  vpn: string;
  host: string;
  port: number;
}

export function parseListen(s: string): ListenSpec {
  const m = /^([^=]+)=(\d+):(.+)$/.exec(s);
  if (!m) throw new Error(`--listen '${s}' must be VPN=LOCALPORT:PEER`);
  return { vpn: m[1]!, localPort: Number(m[2]), peer: m[3]! };
}

export function parseTarget(s: string): TargetSpec {
  const m = /^([^=]+)=(.+):(\d+)$/.exec(s);
  if (!m) throw new Error(`--target '${s}' must be VPN=HOST:PORT`);
  return { vpn: m[1]!, host: m[2]!, port: Number(m[3]) };
}

/** Pipe a socket and a stream into each other. Sockets are half-open capable
 * (allowHalfOpen), so a FIN from one end does not cut the other direction. */
function pipe(sock: Socket, s: Stream, log: DetachLog): void {
  s.events = {
    data: (b) => void sock.write(b),
    end: () => void sock.end(),
    // An RST, not a FIN: the far side's abort (or our lost keys) must not
    // look like an orderly end, even when our receive buffer is empty.
    // (A libuv peer that gets our last bytes and the RST at once reads an
    // end of input, a POLLHUP after a partial read; its next write fails.)
    reset: () => void sock.resetAndDestroy(),
  };
  sock.on('data', (chunk: Buffer) => {
    sock.pause();
    // Resolves once the chunk is queued in the window: the pause is our backpressure.
    detach(s.write(new Uint8Array(chunk)).then(() => sock.resume()), 'tunnel write', log, 'debug', `${s.peer}/${s.sid}`);
  });
  sock.on('end', () => s.close());
  sock.on('error', () => s.reset());
  sock.on('close', (hadError) => {
    if (hadError) s.reset();
  });
}

/** What tunnels need from whoever seals the frames: a terminal or a relay port. */
export interface TunnelIO {
  send(vpn: string, peer: string, payload: Uint8Array): Promise<void>;
  /** The VPN's service port (default target of arriving streams). */
  vpnPort(vpn: string): number | undefined;
}

export interface TunnelOptions {
  /** Listen address (a relay's raw port binds where its profile says). */
  host?: string;
  /** Reset a connection whose bytes wait unacknowledged this long (ms; stream.ts DEFAULT_HOLD_MS). */
  holdMs?: number;
  log?: DetachLog;
}

export class Tunnels {
  private readonly muxes = new Map<string, StreamMux>();
  private readonly servers: Server[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly log: DetachLog;

  constructor(
    private readonly io: TunnelIO,
    private readonly listens: ListenSpec[],
    private readonly targets: TargetSpec[],
    private readonly o: TunnelOptions = {},
  ) {
    this.log = o.log ?? (() => {});
  }

  /** Tunnels over a terminal's own VPN memberships. */
  static forAgent(agent: TerminalAgent, listens: ListenSpec[], targets: TargetSpec[], o: TunnelOptions = {}): Tunnels {
    return new Tunnels({ send: (vpn, peer, p) => agent.send(vpn, peer, p), vpnPort: (vpn) => agent.vpns.get(vpn)?.port }, listens, targets, o);
  }

  /** The VPN's keys are gone (evicted, revoked, deleted): reset its connections now. */
  abort(vpn: string, why: string): void {
    this.muxes.get(vpn)?.abortAll(why);
  }

  private mux(vpn: string): StreamMux {
    let m = this.muxes.get(vpn);
    if (!m) {
      m = new StreamMux({
        send: (peer, p) => this.io.send(vpn, peer, p),
        accept: (s) => this.accept(vpn, s),
        now: () => Date.now(),
        random32: () => randomInt(0, 2 ** 32 - 1),
        log: this.log,
        ...(this.o.holdMs !== undefined ? { holdMs: this.o.holdMs } : {}),
      });
      this.muxes.set(vpn, m);
    }
    return m;
  }

  private accept(vpn: string, s: Stream): void {
    const t = this.targets.find((x) => x.vpn === vpn);
    const port = t?.port ?? this.io.vpnPort(vpn);
    if (!port) return s.reset();
    pipe(createConnection({ host: t?.host ?? '127.0.0.1', port, allowHalfOpen: true }), s, this.log);
  }

  /** Feed a decrypted VPN payload (the agent's onData). */
  onData(vpn: string, from: string, payload: Uint8Array): void {
    this.mux(vpn).receive(from, payload);
  }

  /**
   * Start listeners; resolves with the bound local ports. A port that
   * cannot be bound closes the ones already bound and rejects (BindError).
   */
  async start(): Promise<number[]> {
    const host = this.o.host ?? '127.0.0.1';
    const ports = [];
    for (const l of this.listens) {
      const server = createServer({ allowHalfOpen: true }, (sock) => pipe(sock, this.mux(l.vpn).open(l.peer), this.log));
      try {
        ports.push(await listenOn(server, l.localPort, host));
      } catch (e) {
        await this.stop();
        throw e;
      }
      this.servers.push(server);
    }
    this.timer = setInterval(() => this.muxes.forEach((m) => m.tick()), 200);
    return ports;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.all(this.servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  }
}
