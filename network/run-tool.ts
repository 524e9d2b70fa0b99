/**
 * Run a network tool (nft, tc), optionally inside a network namespace
 * (`ip netns exec`), feeding it a script on standard input. Errors name the
 * driver and say what to install, and a tool that exits before reading its
 * input never crashes us with a broken pipe.
 */
import { spawn } from 'node:child_process';

export function runTool(driver: string, tool: string, args: string[], o: { netns?: string; input?: string; install: string }): Promise<string> {
  const [cmd, argv] = o.netns ? ['ip', ['netns', 'exec', o.netns, tool, ...args]] : [tool, args];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', (e) => reject(new Error(`${driver}: cannot run ${cmd}: ${e.message} (${o.install}; run as root)`)));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${driver}: ${tool} ${args.join(' ')} failed: ${err.trim() || `exit ${code}`}`))));
    p.stdin.on('error', () => {});
    p.stdin.end(o.input ?? '');
  });
}
