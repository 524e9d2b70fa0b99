/**
 * The one way an agent starts work it does not wait for (an event handler,
 * a timer, a socket callback): `detach(promise, what, log)`. A failure is
 * caught, logged and counted under `what`, never left to the host's
 * unhandled-rejection path, which on Node ends the process — and agents
 * are firmware: they do not exit on their own.
 *
 * test/lint/promises.test.ts fails on any `void somePromise`, any promise
 * left as a bare statement, and any async callback handed to something that
 * expects a plain function, in device/ and runtime/node/: those go here.
 *
 *   sock.on('end', () => detach(s.close(), 'tunnel close', log));
 */
export type DetachLog = (level: 'debug' | 'info' | 'warn', msg: string) => void;

const failures = new Map<string, number>();

/**
 * Run `p` to completion in the background; a rejection is logged at `level`
 * and counted under `what`. `what` is a kind of work (a bounded set: it is a
 * counter's key in firmware that runs for months); which stream or port
 * goes in `detail`, which is only logged.
 */
export function detach(p: Promise<unknown>, what: string, log: DetachLog, level: 'debug' | 'info' | 'warn' = 'debug', detail?: string): void {
  p.then(undefined, (e: unknown) => {
    failures.set(what, (failures.get(what) ?? 0) + 1);
    log(level, `${what}${detail ? ` (${detail})` : ''} failed: ${e instanceof Error ? e.message : String(e)}`);
  });
}

/** Failures of detached work so far, by what was detached. */
export function detachedFailures(): Record<string, number> {
  return Object.fromEntries(failures);
}
