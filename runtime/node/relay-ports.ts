/**
 * A relay's downstream ports on Node: one TCP listener per port of its board
 * profile. One plaintext terminal per port; a new connection replaces the
 * old one. Also the plaintext terminal's side: a TCP connection to its port.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { RelayAgent } from '../../device/relay.js';

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

/** board-profiles/ of this checkout: the nearest one above this file (source or dist/). */
function profilesDir(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, d = dirname(d)) {
    if (existsSync(join(d, 'board-profiles'))) return join(d, 'board-profiles');
  }
  throw new Error('board-profiles/ not found');
}

/** Load board-profiles/NAME.json and check what a Node relay needs of it. */
export function loadRelayProfile(name: string): RelayProfile {
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`profile name '${name}' must be lower-case letters, digits and dashes`);
  const file = join(profilesDir(), `${name}.json`);
  if (!existsSync(file)) throw new Error(`no board profile '${name}' (${file})`);
  const p = JSON.parse(readFileSync(file, 'utf8')) as RelayProfile;
  if (!Array.isArray(p.ports) || p.ports.length === 0) throw new Error(`profile ${name}: ports must be a non-empty list`);
  for (const x of p.ports) {
    if (x.kind !== 'tcp') throw new Error(`profile ${name}: port ${x.name} is ${x.kind}; this Node relay serves tcp ports`);
    if (typeof x.name !== 'string' || !Number.isInteger(x.port)) throw new Error(`profile ${name}: every port needs a name and an integer port`);
  }
  return p;
}

export class TcpRelayPorts {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();

  constructor(private readonly relay: RelayAgent, private readonly specs: TcpPortSpec[]) {}

  /** Listen on every port; resolves with name → bound port. */
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
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(spec.port, spec.host, resolve);
      });
      this.servers.push(server);
      bound[spec.name] = (server.address() as { port: number }).port;
    }
    return bound;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** The plaintext terminal's TCP link to HOST:PORT of its relay. */
export function connectToPort(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ host, port, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}
