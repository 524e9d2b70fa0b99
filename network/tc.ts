/**
 * tc driver (embodiment 5): the bandwidth plan enforced on one interface's
 * egress with HTB.
 *
 *   1:     htb root, unclassified traffic → 1:fffe
 *   1:1    the link: rate = ceil = --link-capacity
 *   1:N    one class per VPN that may send: rate = ceil = its planned rate,
 *          prio from its priority (more important → lower tc prio);
 *          u32 filters on its protocol and port (as destination and as
 *          source, so both directions of its service are classified)
 *   1:ffff cut VPNs' packets: a blackhole qdisc drops them until the plan
 *          restores the VPN (no tc action modules needed)
 *   1:fffe everything else: a small guaranteed rate, may borrow the rest
 *
 * Applied whole: the old root qdisc is deleted, the new tree added in one
 * `tc -batch`, so a reconcile is idempotent. IPv4 filters (u32 `ip`).
 */
import type { DesiredState, NetworkDriver } from './driver.js';
import { runTool } from './run-tool.js';

export interface TcOptions {
  /** The interface whose egress is shaped. */
  dev: string;
  /** The link's capacity (bits/s) the plan divides. */
  capacity: number;
  /** Run tc inside this network namespace. */
  netns?: string;
}

const PROTO = { tcp: 6, udp: 17 } as const;
/** Guaranteed to traffic that is in no VPN (control messages, ssh...). */
const DEFAULT_RATE = 64_000;

export class TcDriver implements NetworkDriver {
  readonly name = 'tc';

  constructor(private readonly o: TcOptions) {
    if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(o.dev)) throw new Error(`tc: bad interface name '${o.dev}'`);
    if (!(Number.isInteger(o.capacity) && o.capacity > 0)) throw new Error('tc: the link capacity must be given (kagi up --link-capacity RATE)');
  }

  private run(args: string[], input?: string): Promise<string> {
    return runTool('tc', 'tc', args, { ...(this.o.netns ? { netns: this.o.netns } : {}), ...(input !== undefined ? { input } : {}), install: 'install iproute2' });
  }

  /** Refuse to start rather than run unshaped: tc must run and the interface exist. */
  async check(): Promise<void> {
    await this.run(['qdisc', 'show', 'dev', this.o.dev]);
  }

  /** The whole qdisc tree for a desired state, as one tc batch. */
  script(state: DesiredState): string {
    const dev = `dev ${this.o.dev}`;
    const cap = this.o.capacity;
    const lines = [
      `qdisc add ${dev} root handle 1: htb default fffe`,
      `class add ${dev} parent 1: classid 1:1 htb rate ${cap}bit ceil ${cap}bit quantum 1514`,
      `class add ${dev} parent 1:1 classid 1:fffe htb rate ${Math.min(DEFAULT_RATE, cap)}bit ceil ${cap}bit prio 7 quantum 1514`,
      `class add ${dev} parent 1:1 classid 1:ffff htb rate 8bit ceil 8bit prio 7 quantum 1514`,
      `qdisc add ${dev} parent 1:ffff handle ffff: blackhole`,
    ];
    const active = state.vpns.filter((v) => v.members.length > 0).sort((a, b) => (a.id < b.id ? -1 : 1));
    const levels = [...new Set(active.map((v) => v.priority))].sort((a, b) => b - a);
    active.forEach((v, i) => {
      const classid = `1:${(0x10 + i).toString(16)}`;
      const target = v.cut ? 'flowid 1:ffff' : `flowid ${classid}`;
      if (!v.cut && v.rate > 0) lines.push(`class add ${dev} parent 1:1 classid ${classid} htb rate ${v.rate}bit ceil ${v.rate}bit prio ${Math.min(6, levels.indexOf(v.priority))} quantum 1514`);
      if (!v.cut && v.rate <= 0) return; // capacity unknown: not shaped
      for (const side of ['dport', 'sport']) {
        lines.push(`filter add ${dev} parent 1: protocol ip prio 1 u32 match ip protocol ${PROTO[v.protocol]} 0xff match ip ${side} ${v.port} 0xffff ${target}`);
      }
    });
    return lines.join('\n') + '\n';
  }

  private applied: string | null = null;

  async apply(state: DesiredState): Promise<void> {
    // Rebuilding drops what is queued: only when the plan changed.
    const script = this.script(state);
    if (script === this.applied) return;
    // The old tree goes first (there may be none: that failure is fine),
    // then the new one in one batch, where any failing line is an error.
    await this.run(['qdisc', 'del', 'dev', this.o.dev, 'root']).catch(() => {});
    await this.run(['-batch', '-'], script);
    this.applied = script;
  }
}
