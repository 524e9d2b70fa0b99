/**
 * A relay's downstream ports on Node: one TCP listener per port of its board
 * profile. One plaintext terminal per port; a new connection replaces the
 * old one. Also the plaintext terminal's side: a TCP connection to its port.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { RelayAgent } from '../../device/relay.js';
import { KagiError } from '../../protocol/errors.js';
import { loadProfile } from './board-profiles.js';
import { listenOn } from './bind.js';
import type { BoardProfile } from '../../device/board-profile.js';

export interface TcpPortSpec {
  name: string;
  kind: 'tcp';
  host: string;
  port: number;
}

export interface RelayProfile {
  name: string;
  ports: TcpPortSpec[];
}

/** Load board-profiles/NAME.json and check what a Node relay needs of it. */
export function loadRelayProfile(name: string): RelayProfile {
  return relayProfileOf(loadProfile(name));
}

/** The TCP ports of a Node relay profile. */
export function relayProfileOf(p: BoardProfile): RelayProfile {
  const name = p.name;
  if (p.role !== 'relay' || p.runtime !== 'node') throw new KagiError('profile', `profile ${name} is a ${p.runtime} ${p.role}; kagi agent runs node relays`);
  const ports: TcpPortSpec[] = [];
  for (const x of p.ports) {
    if (x.kind !== 'tcp') throw new KagiError('profile', `profile ${name}: port ${x.name} is ${x.kind}; this Node relay serves tcp ports`);
    ports.push(x);
  }
  return { name: p.name, ports };
}

export class TcpRelayPorts {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();

  constructor(private readonly relay: RelayAgent, private readonly specs: TcpPortSpec[]) {}

  /** Listen on every port; resolves with name → bound port, or rejects (BindError) with none left bound. */
  async start(): Promise<Record<string, number>> {
    const bound: Record<string, number> = {};
    for (const spec of this.specs) {
      const server = createServer((sock) => {
        sock.setNoDelay(true);
        this.sockets.add(sock);
        const io = { write: (b: Uint8Array) => void sock.write(b) };
        this.relay.attach(spec.name, io);
        sock.on('data', (d: Buffer) => this.relay.input(spec.name, new Uint8Array(d.buffer, d.byteOffset, d.length)));
        sock.on('close', () => {
          this.sockets.delete(sock);
          this.relay.detach(spec.name, io);
        });
        sock.on('error', () => {});
      });
      try {
        bound[spec.name] = await listenOn(server, spec.port, spec.host);
      } catch (e) {
        await this.stop();
        throw e;
      }
      this.servers.push(server);
    }
    return bound;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  }
}

/** The plaintext terminal's TCP link to HOST:PORT of its relay. */
export function connectToPort(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host, port, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}
