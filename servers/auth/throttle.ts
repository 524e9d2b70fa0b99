/**
 * Throttling of failed password attempts (issue 21): per user and per
 * device, exponential backoff, reset on success. Free for the first
 * `free` failures; after failure n > free-1 the next attempt waits
 * baseMs · 2^(n − free), at most capMs. The counts live in the store
 * (`password_failures`), so every auth instance on a shared store
 * throttles alike, and a restart forgives nobody.
 *
 * Keys: `user:ID` (every device guessing one user's password throttles
 * that user, so a botnet of provisioned devices gets no more guesses than
 * one) and `device:ID` (one device guessing many users is throttled as a
 * device). An honest device joining another user shares neither key.
 * The device's attempt counts from its claim (a burst is counted whole);
 * the user's only once it failed (many honest devices of one user join at
 * once after a power cut, and must not throttle each other).
 * The price: anyone with a provisioned device can keep a user throttled
 * (decision 67). Unknown user ids are counted the same way as known ones,
 * so throttling does not tell a prober which ids exist.
 */
import type { Store } from '../store/store.js';

export interface ThrottlePolicy {
  /** Failures that cost nothing (no wait before the next attempt). */
  free: number;
  /** The first wait (ms), doubled with each further failure. */
  baseMs: number;
  /** The longest wait (ms). */
  capMs: number;
}

export const DEFAULT_THROTTLE: ThrottlePolicy = { free: 3, baseMs: 1_000, capMs: 15 * 60_000 };

/** Keys of quiet rows are forgotten this long after their last wait ended. */
export const FORGET_AFTER_MS = 24 * 3_600_000;

/** How long the next attempt waits after `failures` failures in a row (ms). */
export function delayAfter(p: ThrottlePolicy, failures: number): number {
  if (failures < p.free) return 0;
  return Math.min(p.capMs, p.baseMs * 2 ** Math.min(failures - p.free, 40));
}

export const throttleKeys = (userId: string, deviceId: string): string[] => [`user:${userId}`, `device:${deviceId}`];

export class Throttle {
  constructor(private readonly store: Store, readonly policy: ThrottlePolicy = DEFAULT_THROTTLE) {}

  /**
   * Claim an attempt: 0 to go on, else how long (ms) until the user and
   * the device may try again. The device's attempt counts as failed from
   * here until `succeeded` (a device sends one join at a time, so a burst
   * of guesses sent at once is counted whole); the user's counts only if
   * it `failed` (many honest devices of one user join at once after a
   * power cut, and must not block each other).
   */
  async claim(userId: string, deviceId: string, now = Date.now()): Promise<number> {
    const keys = throttleKeys(userId, deviceId);
    const until = await this.store.claimPasswordAttempt(keys, [`device:${deviceId}`], now, this.delay);
    return until > 0 ? Math.max(1, until - now) : 0;
  }

  /** The password was wrong (or the user unknown): one more failure for the user. */
  async failed(userId: string, now = Date.now()): Promise<void> {
    await this.store.claimPasswordAttempt([], [`user:${userId}`], now, this.delay);
  }

  succeeded(userId: string, deviceId: string): Promise<void> {
    return this.store.clearPasswordFailures(throttleKeys(userId, deviceId));
  }

  private readonly delay = (failures: number) => delayAfter(this.policy, failures);

  /** Forget keys quiet for a day (an unknown id a prober tried, a user long past its failures). */
  prune(now = Date.now()): Promise<number> {
    return this.store.prunePasswordFailures(now - FORGET_AFTER_MS);
  }
}
