/**
 * Two network namespaces of the test's own, joined by a veth pair:
 *   fw   10.X.Y.1   (the firewall / service host; nft runs here)
 *   cli  10.X.Y.2 (A) and 10.X.Y.3 (B)
 * Addresses are private to these namespaces; nothing leaves the machine.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';

export interface Netns {
  fw: string;
  cli: string;
  /** The veth ends: in fw, and in cli. */
  fwDev: string;
  cliDev: string;
  fwAddr: string;
  a: string;
  b: string;
  /** Start a TCP server in fw on `port` that answers "ok" and closes. */
  serve(port: number): ChildProcess;
  /** Connect from `source` (an address of cli) to fw:port; true if it got "ok". */
  reach(source: string, port: number): boolean;
  destroy(): void;
}

/** Why these tests cannot run here, or null. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'SKIPPED: network namespace tests need root';
  for (const bin of ['ip', 'nft', 'tc']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `SKIPPED: needs '${bin}' (apt-get install -y ${bin === 'nft' ? 'nftables' : 'iproute2'})`;
  }
  return null;
}

const sh = (args: string[]) => execFileSync(args[0]!, args.slice(1), { stdio: 'pipe' });

export function makeNetns(): Netns {
  const id = `${process.pid % 100000}`;
  const net = `10.${200 + (process.pid % 50)}.${Math.floor(process.pid / 50) % 250}`;
  const fw = `kagi-fw-${id}`, cli = `kagi-cl-${id}`;
  const vf = `kf${id}`, vc = `kc${id}`;
  const n: Netns = {
    fw, cli, fwDev: vf, cliDev: vc, fwAddr: `${net}.1`, a: `${net}.2`, b: `${net}.3`,
    serve(port) {
      return spawn('ip', ['netns', 'exec', fw, process.execPath, '-e', `require('net').createServer((s) => s.end('ok')).listen(${port}, '0.0.0.0')`], { stdio: 'ignore' });
    },
    reach(source, port) {
      const js = `const s = require('net').connect({ host: '${net}.1', port: ${port}, localAddress: '${source}' });
        let d = ''; s.on('data', (x) => (d += x)); s.on('end', () => process.exit(d === 'ok' ? 0 : 4));
        s.on('error', () => process.exit(2)); setTimeout(() => process.exit(3), 1500);`;
      return spawnSync('ip', ['netns', 'exec', cli, process.execPath, '-e', js]).status === 0;
    },
    destroy() {
      for (const ns of [fw, cli]) spawnSync('ip', ['netns', 'del', ns]);
    },
  };
  n.destroy();
  sh(['ip', 'netns', 'add', fw]);
  sh(['ip', 'netns', 'add', cli]);
  sh(['ip', 'link', 'add', vf, 'type', 'veth', 'peer', 'name', vc]);
  sh(['ip', 'link', 'set', vf, 'netns', fw]);
  sh(['ip', 'link', 'set', vc, 'netns', cli]);
  sh(['ip', '-n', fw, 'addr', 'add', `${net}.1/24`, 'dev', vf]);
  sh(['ip', '-n', cli, 'addr', 'add', `${net}.2/24`, 'dev', vc]);
  sh(['ip', '-n', cli, 'addr', 'add', `${net}.3/24`, 'dev', vc]);
  for (const [ns, dev] of [[fw, vf], [cli, vc]] as const) {
    sh(['ip', '-n', ns, 'link', 'set', dev, 'up']);
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }
  return n;
}
