/**
 * Raw relay ports (DESIGN §7): a legacy device that runs no agent at all.
 * The relay's config names the device's identity and preset credentials;
 * the relay configures and joins for it, and once the port is FORWARDING
 * carries each TCP connection on the port as a stream to the VPN peer
 * (whose agent connects it to its target), exactly as `--listen` does.
 */
import { readFileSync } from 'node:fs';
import type { RelayAgent } from '../../device/relay.js';
import { Tunnels, type TunnelOptions } from './tunnel.js';
import type { TcpPortSpec } from './relay-ports.js';

export interface RawPortSpec {
  port: string;
  id: string;
  mac: string;
  user: string;
  password: string;
  vpn: string;
  peer: string;
}

export function loadRawPorts(file: string): RawPortSpec[] {
  const v = JSON.parse(readFileSync(file, 'utf8')) as RawPortSpec[];
  if (!Array.isArray(v)) throw new Error(`${file}: a list of raw ports`);
  for (const r of v) {
    for (const k of ['port', 'id', 'mac', 'user', 'password', 'vpn', 'peer'] as const) {
      if (typeof r[k] !== 'string') throw new Error(`${file}: raw port ${r.port ?? '?'} needs ${k} (a string)`);
    }
  }
  return v;
}

export class RawPorts {
  private readonly tunnels: Tunnels[] = [];

  constructor(private readonly relay: RelayAgent, private readonly specs: RawPortSpec[], private readonly bind: TcpPortSpec[], private readonly o: Omit<TunnelOptions, 'host'> = {}) {}

  /** Listen on each raw port (before anything joins: a port in use fails first); name → bound port. */
  async listen(): Promise<Record<string, number>> {
    const bound: Record<string, number> = {};
    for (const r of this.specs) {
      const where = this.bind.find((b) => b.name === r.port);
      if (!where) throw new Error(`raw port ${r.port} is not a port of the relay's profile`);
      const tunnels = new Tunnels(
        { send: (vpn, peer, p) => this.relay.sendFrom(r.port, vpn, peer, p), vpnPort: () => undefined },
        [{ vpn: r.vpn, localPort: where.port, peer: r.peer }],
        [],
        { host: where.host, ...this.o },
      );
      const [p] = await tunnels.start();
      this.tunnels.push(tunnels);
      bound[r.port] = p!;
    }
    return bound;
  }

  /** Configure and join for each legacy device (the relay is started); connections held until then go on. */
  async join(): Promise<void> {
    for (const [i, r] of this.specs.entries()) {
      await this.relay.configurePort(r.port, r.id, r.mac);
      this.relay.ports.get(r.port)!.onData = (vpn, from, b) => this.tunnels[i]!.onData(vpn, from, b);
      await this.relay.joinPort(r.port, r.user, r.password);
    }
  }

  /** listen() then join(). */
  async start(): Promise<Record<string, number>> {
    const bound = await this.listen();
    await this.join();
    return bound;
  }

  async stop(): Promise<void> {
    for (const t of this.tunnels) await t.stop();
  }
}
