/**
 * Run the real `kagi` command (the build when current: helpers/built.ts),
 * or run a command in this process through the same dispatch (kagiIn).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { format } from 'node:util';
import { run } from '../../cli/run.js';
import { stdio } from '../../cli/args.js';
import { nodeArgs } from './built.js';
import { deadline } from './deadline.js';
import { UNHANDLED } from '../../cli/agent-life.js';

const args = (a: string[]) => [...nodeArgs(join('cli', 'kagi.ts')), ...a];

export function kagi(a: string[], input?: string) {
  const r = spawnSync(process.execPath, args(a), { input: input ?? '', encoding: 'utf8', timeout: deadline(60_000) });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let inFlight = false;

/**
 * Run `kagi ARGS` in this process: the dispatch the binary runs (cli/run.ts),
 * with `input` as standard input, and what it prints captured, not shown.
 * Seconds cheaper than a spawn under load; for commands whose effect is
 * their output, exit code and the data dir. What only a process can show
 * (the exit itself, a pipe, signals) is for kagi() and kagiSpawn().
 * One at a time: the capture replaces console.log and console.error.
 */
export async function kagiIn(a: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  if (inFlight) throw new Error('kagiIn: one in-process kagi at a time (await the previous one)');
  inFlight = true;
  let stdout = '';
  let stderr = '';
  const saved = { log: console.log, error: console.error, stdin: stdio.stdin };
  console.log = (...x: unknown[]) => void (stdout += `${format(...x)}\n`);
  console.error = (...x: unknown[]) => void (stderr += `${format(...x)}\n`);
  stdio.stdin = Readable.from([Buffer.from(input ?? '')]);
  try {
    return { code: await run(a), stdout, stderr };
  } finally {
    Object.assign(console, { log: saved.log, error: saved.error });
    stdio.stdin = saved.stdin;
    inFlight = false;
  }
}

/**
 * Run `kagi ARGS` without blocking this process: for commands that talk to
 * a control plane running in the test process (kagi() would stall its
 * event loop, and so the broker the command waits on).
 */
export function kagiAsync(a: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args(a), { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end(input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), deadline(60_000));
  return new Promise((resolve) => child.once('close', (code) => (clearTimeout(timer), resolve({ code, stdout, stderr }))));
}

/** What each spawned kagi printed on stderr (read, so a chatty child never blocks on a full pipe). */
const stderrOf = new WeakMap<ChildProcess, { text: string }>();

/** Spawn `kagi ARGS`, optionally inside a network namespace of the test's own. */
export function kagiSpawn(a: string[], o: { netns?: string } = {}) {
  const child = o.netns
    ? spawn('ip', ['netns', 'exec', o.netns, process.execPath, ...args(a)], { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, args(a), { stdio: ['pipe', 'pipe', 'pipe'] });
  const err = { text: '' };
  child.stderr.on('data', (d) => (err.text += d));
  stderrOf.set(child, err);
  return child;
}

/** Start `kagi up ARGS`; resolves once it is up, with the broker URL it printed. */
export function kagiUp(a: string[], o: { netns?: string } = {}): Promise<ChildProcess & { brokerUrl: string }> {
  const child = kagiSpawn(['up', ...a], o);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /kagi up: broker (\S+),/.exec(out);
      if (m) resolve(Object.assign(child, { brokerUrl: m[1]! }));
    });
    child.once('exit', (code) => reject(new Error(`kagi up ${a.join(' ')} exited ${code}: ${out}`)));
  });
}

/** Everything a child prints on stdout, and a wait for a pattern in it. */
export function watch(child: ChildProcess): { until(re: RegExp, ms?: number): Promise<string>; text(): string } {
  let out = '';
  // The exit and stderr only say, on a timeout, why the line never came.
  let exit = '';
  child.stdout!.on('data', (d) => (out += d));
  child.once('exit', (code, signal) => (exit = `exited ${signal ?? code}`));
  const why = () => {
    const err = stderrOf.get(child)?.text.trim() ?? '';
    return exit || err ? `\n--- ${exit || 'still running'}; stderr: ${err || '(nothing)'}` : '';
  };
  return {
    text: () => out,
    until(re, ms = 15_000) {
      ms = deadline(ms);
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!re.test(out)) return;
          clearTimeout(timer);
          child.stdout!.off('data', check);
          resolve(out);
        };
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} in: ${out}${why()}`)), ms);
        child.stdout!.on('data', check);
        check();
      });
    },
  };
}

/** Stop a child the way an operator does (SIGTERM) and wait until it is gone (SIGKILL after 5 s). */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
  // An agent's last line of defence caught a promise nobody handled: a bug, whatever the test asserted.
  const err = stderrOf.get(child)?.text ?? '';
  if (err.includes(UNHANDLED)) throw new Error(`a kagi process printed "${UNHANDLED}":\n${err.slice(-2000)}`);
}
