/**
 * nftables driver: one `inet` table (default `kagi`) holding, per VPN, a set
 * of the members' source addresses and a rule pair on the VPN's
 * protocol/port: from a member → accept, from anyone else → drop. Other
 * traffic is not touched. Every apply replaces the whole table in one
 * `nft -f` transaction, so it is idempotent and a restart converges.
 */
import { runTool } from './run-tool.js';
import { createHash } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import type { DesiredState, NetworkDriver } from './driver.js';

export interface NftablesOptions {
  /** Run nft inside this network namespace (`ip netns exec`). */
  netns?: string;
  table?: string;
  /** `forward` on a firewall between networks, `input` on the service host. */
  hook?: 'forward' | 'input';
}

/** The set of a VPN's member addresses (kagi why names it). nft identifiers are [A-Za-z_][A-Za-z0-9_]*: VPN ids may not be. */
export function nftSetName(vpnId: string, family: 'v4' | 'v6'): string {
  const safe = vpnId.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 40);
  const h = createHash('sha256').update(vpnId).digest('hex').slice(0, 8);
  return `vpn_${safe}_${h}_${family}`;
}

/** The broker reports IPv4 peers as ::ffff:a.b.c.d. */
export function normalizeAddress(a: string): string {
  return a.startsWith('::ffff:') && isIPv4(a.slice(7)) ? a.slice(7) : a;
}

export class NftablesDriver implements NetworkDriver {
  readonly name = 'nftables';
  private readonly table: string;

  constructor(private readonly o: NftablesOptions = {}) {
    this.table = o.table ?? 'kagi';
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(this.table)) throw new Error(`nftables: bad table name '${this.table}'`);
  }

  private run(args: string[], input?: string): Promise<string> {
    return runTool('nftables', 'nft', args, { ...(this.o.netns ? { netns: this.o.netns } : {}), ...(input !== undefined ? { input } : {}), install: 'install nftables' });
  }

  /** Refuse to start rather than run open: nft must exist and be allowed. */
  async check(): Promise<void> {
    await this.run(['list', 'tables']);
  }

  /** The whole table for a desired state, as one nft script. */
  script(state: DesiredState): string {
    const lines = [`table inet ${this.table} {}`, `delete table inet ${this.table}`, `table inet ${this.table} {`];
    const rules: string[] = [];
    for (const v of state.vpns) {
      const addrs = v.members.map((m) => m.address).filter((a): a is string => !!a).map(normalizeAddress);
      for (const [family, type, test, match] of [['v4', 'ipv4_addr', isIPv4, 'ip saddr'], ['v6', 'ipv6_addr', isIPv6, 'ip6 saddr']] as const) {
        const name = nftSetName(v.id, family);
        const elems = [...new Set(addrs.filter((a) => test(a)))].sort();
        lines.push(`  set ${name} { type ${type};${elems.length ? ` elements = { ${elems.join(', ')} };` : ''} }`);
        rules.push(`    ${v.protocol} dport ${v.port} ${match} @${name} accept`);
      }
      rules.push(`    ${v.protocol} dport ${v.port} drop`);
    }
    lines.push(`  chain filter {`, `    type filter hook ${this.o.hook ?? 'forward'} priority 0; policy accept;`, ...rules, '  }', '}');
    return lines.join('\n') + '\n';
  }

  async apply(state: DesiredState): Promise<void> {
    await this.run(['-f', '-'], this.script(state));
  }

  /** Remove the table (shutdown of a test, or `kagi up` without the driver). */
  async remove(): Promise<void> {
    await this.run(['-f', '-'], `table inet ${this.table} {}\ndelete table inet ${this.table}\n`);
  }
}
