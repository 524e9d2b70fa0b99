/**
 * Several `kagi up --instance` processes on the running Mosquitto and a
 * PostgreSQL schema of the test's own (scale-out, DESIGN §8). They run the
 * built CLI (dist/, made by `npm test`'s pretest build): three processes
 * through the TypeScript loader take longer to start than the test runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { MOSQUITTO_URL } from './mosquitto.js';
import { deadline } from './deadline.js';

export interface Instance {
  name: string;
  child: ChildProcess;
  /** Everything it printed so far. */
  out(): string;
  /** Wait for a line matching `re` (rejects after `ms`). */
  until(re: RegExp, ms?: number): Promise<void>;
  kill(): Promise<void>;
}

/** A share group no other test (or earlier run) on the shared broker uses. */
export function shareGroup(): string {
  return `t${randomBytes(4).toString('hex')}`;
}

export function startInstance(name: string, o: { data: string; store: string; group: string; args?: string[] }): Instance {
  const args = ['dist/cli/kagi.js', 'up', '--broker', MOSQUITTO_URL, '--store', o.store, '--data', o.data, '--instance', name, '--share-group', o.group, '--log-format', 'text', ...(o.args ?? [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const grow = (d: Buffer) => (text += d.toString());
  child.stdout.on('data', grow);
  child.stderr.on('data', grow);
  return {
    name,
    child,
    out: () => text,
    until: (re, ms = 20_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => (child.stdout.off('data', check), reject(new Error(`instance ${name}: no ${re} within ${deadline(ms)} ms:\n${text.slice(-3000)}`))), deadline(ms));
        function check() {
          if (!re.test(text)) return;
          clearTimeout(timer);
          child.stdout.off('data', check);
          resolve();
        }
        child.stdout.on('data', check);
        check();
      }),
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL'); // as a crash: no graceful anything
      await gone;
    },
  };
}

/** Start `n` instances and wait until each is up. */
export async function startInstances(n: number, o: Parameters<typeof startInstance>[1]): Promise<Instance[]> {
  const all = Array.from({ length: n }, (_, i) => startInstance(`i${i + 1}`, o));
  await Promise.all(all.map((x) => x.until(/kagi up: instance/)));
  return all;
}
