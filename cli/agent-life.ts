/**
 * What keeps `kagi agent` running as firmware does: it never exits on its
 * own, only on SIGINT/SIGTERM (leaving cleanly) or at a refusal it cannot
 * get past. Startup (connect, configure, join) may take as long as the
 * broker and control plane take, so a signal during it stops the agent
 * too, and a rejoin after an eviction retries until it gets in.
 */
import { backoffDelay } from '../protocol/backoff.js';
import { RefusedError } from '../device/session.js';
import { detach, type DetachLog } from '../device/detach.js';

/** Printed when a promise rejection reached Node unhandled (a bug: device/detach.ts is the way). */
export const UNHANDLED = 'BUG: unhandled promise rejection';

/**
 * The last line of defence: Node's default ends the process at an
 * unhandled rejection, and an agent must not die of a bug in a side path.
 * It does not swallow: the line is loud (stderr, with the stack), and the
 * e2e tests fail when it appears (test/e2e/outage.test.ts).
 */
export function lastLineOfDefence(): void {
  process.on('unhandledRejection', (e) => {
    console.error(`error: ${UNHANDLED} (the agent keeps running; please report this): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  });
}

/** Resolves at the first SIGINT or SIGTERM (from the moment it is called). */
export function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

/**
 * Run `startup` unless a signal comes first. true: a signal came (the
 * caller stops the agent; startup then fails with "agent stopping", which
 * is logged at debug level, not thrown).
 */
export async function startOrSignal(startup: Promise<void>, signal: Promise<void>, log: DetachLog): Promise<boolean> {
  const signalled = await Promise.race([startup.then(() => false), signal.then(() => true)]);
  if (signalled) detach(startup, 'startup (stopped by a signal)', log);
  return signalled;
}

/**
 * Join again after an eviction, with backoff and jitter, until a join
 * succeeds, a refusal says the grant is gone, or the agent stops.
 */
export function rejoiner(id: string, join: () => Promise<{ id: string; epoch: number }[]>, stopped: () => boolean): () => void {
  let running = false;
  const run = async () => {
    for (let attempt = 0; !stopped(); attempt++) {
      await new Promise((r) => setTimeout(r, backoffDelay(attempt, Math.random())));
      if (stopped()) return;
      try {
        for (const x of await join()) console.log(`rejoined ${x.id} (epoch ${x.epoch})`);
        return;
      } catch (e) {
        console.log(`${id}: rejoin failed: ${(e as Error).message}`);
        if (e instanceof RefusedError) return;
      }
    }
  };
  return () => {
    if (running) return;
    running = true;
    detach(run().finally(() => (running = false)), `${id}: rejoin`, (level, msg) => console.log(`${level}: ${msg}`));
  };
}
