/**
 * Whose polls can count (docs/architecture.md, Liveness: "Whose polls
 * count"). A missed poll is evidence against a member only if the poll
 * reached the broker its holder uses. A control plane that polls through a
 * broker nobody uses (a second `kagi up` on the same data dir with another
 * port and its own empty broker) hears no answers from anyone, and must not
 * evict the fleet for it. So a poll counts only when the broker took it
 * (QoS 1, acknowledged) and its holder is on this broker as far as this
 * process knows:
 *
 *  - seen: since this process started, the holder connected to the
 *    embedded broker, its state topic came through this broker (online, or
 *    the will's offline), or it sent us an authenticated message; once seen,
 *    a holder keeps counting when it disconnects (a killed agent is what
 *    eviction is for); or
 *  - recorded: the store says its presence was last heard on this same
 *    broker (by URL), by an earlier process or another instance, and either
 *    it was missing polls already (its count is in the store), or the
 *    reconnect window has passed since this process took the duty: a
 *    restarted embedded broker starts empty, and a live agent is back
 *    within its longest reconnect delay.
 *
 * Anyone else is polled (an answer makes it seen) but misses nothing.
 */
import { DEFAULT_BACKOFF } from '../../protocol/backoff.js';

/** An agent's longest reconnect delay (protocol/backoff.ts) and time for its CONNECT. */
export const RECONNECT_WINDOW_MS = DEFAULT_BACKOFF.maxMs + 5_000;

export class Reach {
  private readonly seen = new Set<string>();
  private recorded = new Set<string>();
  private since: number;

  constructor(now: number, private readonly windowMs = RECONNECT_WINDOW_MS) {
    this.since = now;
  }

  /** The holder showed itself on our broker. */
  saw(holder: string): void {
    this.seen.add(holder);
  }

  /** This process takes the polls (start, or the lease): who the store last heard on our broker. */
  restart(recorded: Iterable<string>, now: number): void {
    this.recorded = new Set(recorded);
    this.since = now;
  }

  /** Whether a poll to `holder` that the broker took counts; `missing`: its member was missing polls already. */
  counts(holder: string, missing: boolean, now: number): boolean {
    if (this.seen.has(holder)) return true;
    if (!this.recorded.has(holder)) return false;
    return missing || now - this.since >= this.windowMs;
  }
}
