/**
 * Reconnect delays: exponential backoff with full jitter (a uniform draw
 * below an exponentially growing cap). After a broker restart every agent
 * of a site would otherwise come back in the same instant; jitter spreads
 * them over the window, and the growth keeps a long outage cheap.
 */
export interface BackoffOptions {
  /** Cap of the first attempt (ms). */
  baseMs: number;
  /** Largest cap (ms). */
  maxMs: number;
  /** Never retry sooner than this (ms). */
  minMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 15_000, minMs: 100 };

/** Delay before reconnect attempt `attempt` (0-based); `random` in [0, 1). */
export function backoffDelay(attempt: number, random: number, o: BackoffOptions = DEFAULT_BACKOFF): number {
  const cap = Math.min(o.maxMs, o.baseMs * 2 ** Math.min(attempt, 30));
  return Math.max(o.minMs, Math.floor(random * cap));
}

/**
 * How long to wait after a refusal that says when to come back
 * (`throttled`, `busy`: retryAfter seconds): never sooner, plus a uniform
 * jitter of up to that long again (at most 30 s), so devices refused
 * together do not come back together. `random` in [0, 1).
 */
export function retryAfterDelay(retryAfterS: number, random: number): number {
  const ms = Math.max(1, retryAfterS) * 1000;
  return ms + Math.floor(random * Math.min(ms, 30_000));
}
