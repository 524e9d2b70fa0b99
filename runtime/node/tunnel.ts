/**
 * TCP tunnels over a terminal's VPNs (DESIGN: the VPN's protocol/port is the
 * service it carries). `--listen VPN=LOCALPORT:PEER` accepts TCP on
 * 127.0.0.1:LOCALPORT and carries each connection to device PEER, whose
 * agent connects it to its target for that VPN (127.0.0.1:<VPN port> unless
 * `--target VPN=HOST:PORT`). Close and reset propagate both ways.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import { StreamMux, type Stream } from '../../device/stream.js';
import type { TerminalAgent } from '../../device/terminal.js';

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
function pipe(sock: Socket, s: Stream): void {
  s.events = {
    data: (b) => void sock.write(b),
    end: () => void sock.end(),
    reset: () => void sock.destroy(),
  };
  sock.on('data', (chunk: Buffer) => {
    sock.pause();
    s.write(new Uint8Array(chunk)).then(() => sock.resume(), () => sock.destroy());
  });
  sock.on('end', () => void s.close());
  sock.on('error', () => void s.reset());
  sock.on('close', (hadError) => {
    if (hadError) void s.reset();
  });
}

/** What tunnels need from whoever seals the frames: a terminal or a relay port. */
export interface TunnelIO {
  send(vpn: string, peer: string, payload: Uint8Array): Promise<void>;
  /** The VPN's service port (default target of arriving streams). */
  vpnPort(vpn: string): number | undefined;
}

export class Tunnels {
  private readonly muxes = new Map<string, StreamMux>();
  private readonly servers: Server[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly io: TunnelIO,
    private readonly listens: ListenSpec[],
    private readonly targets: TargetSpec[],
    /** Listen address (a relay's raw port binds where its profile says). */
    private readonly host = '127.0.0.1',
  ) {}

  /** Tunnels over a terminal's own VPN memberships. */
  static forAgent(agent: TerminalAgent, listens: ListenSpec[], targets: TargetSpec[]): Tunnels {
    return new Tunnels({ send: (vpn, peer, p) => agent.send(vpn, peer, p), vpnPort: (vpn) => agent.vpns.get(vpn)?.port }, listens, targets);
  }

  private mux(vpn: string): StreamMux {
    let m = this.muxes.get(vpn);
    if (!m) {
      m = new StreamMux({
        send: (peer, p) => this.io.send(vpn, peer, p),
        accept: (s) => this.accept(vpn, s),
        now: () => Date.now(),
        random32: () => randomInt(0, 2 ** 32 - 1),
      });
      this.muxes.set(vpn, m);
    }
    return m;
  }

  private accept(vpn: string, s: Stream): void {
    const t = this.targets.find((x) => x.vpn === vpn);
    const port = t?.port ?? this.io.vpnPort(vpn);
    if (!port) return void s.reset();
    pipe(createConnection({ host: t?.host ?? '127.0.0.1', port, allowHalfOpen: true }), s);
  }

  /** Feed a decrypted VPN payload (the agent's onData). */
  onData(vpn: string, from: string, payload: Uint8Array): void {
    this.mux(vpn).receive(from, payload);
  }

  /** Start listeners; resolves with the bound local ports. */
  async start(): Promise<number[]> {
    this.timer = setInterval(() => this.muxes.forEach((m) => m.tick()), 200);
    const ports = [];
    for (const l of this.listens) {
      const server = createServer({ allowHalfOpen: true }, (sock) => {
        this.mux(l.vpn).open(l.peer).then((s) => pipe(sock, s), () => sock.destroy());
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(l.localPort, this.host, resolve);
      });
      this.servers.push(server);
      ports.push((server.address() as { port: number }).port);
    }
    return ports;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }
}
