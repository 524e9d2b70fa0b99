/**
 * The password check of a join (2b, issue 21), in this order:
 *  1. a place on the hash pool, or `busy` with a retry time (hash-pool.ts);
 *  2. the attempt claimed against the user's and the device's failures, or
 *     `throttled` with a retry time (throttle.ts): a throttled attempt
 *     costs no hash; the device's attempt counts from here, the user's
 *     only once it failed;
 *  3. scrypt on the pool, against the user's hash, or for an unknown user
 *     against a dummy hash made at start with the same parameters, so both
 *     cost one scrypt and answer the same (`password`).
 * Success clears the failures of the user and the device (a write handed
 * back under way, so the join's next writes share its commit); a failure
 * adds one to the user's.
 */
import { randomBytes } from 'node:crypto';
import type { Store, UserRow } from '../store/store.js';
import type { Metrics } from '../metrics.js';
import { hashPassword, verifyPassword } from './password.js';
import { HashPool, type HashPoolOptions } from './hash-pool.js';
import { DEFAULT_THROTTLE, Throttle, type ThrottlePolicy } from './throttle.js';

export interface PasswordCheckOptions extends HashPoolOptions {
  throttle?: Partial<ThrottlePolicy>;
}

export type PasswordVerdict =
  /**
   * `cleared`: the failures' reset, under way. The caller awaits it with
   * the writes that follow (one group commit, not one each in turn); a
   * rejection is marked handled here, so a caller that fails first leaves
   * no unhandled rejection behind.
   */
  | { ok: true; cleared: Promise<void> }
  | { ok: false; code: 'password'; detail: 'unknown-user' | 'wrong-password' }
  | { ok: false; code: 'throttled' | 'busy'; retryAfter: number; detail: string };

export class PasswordCheck {
  readonly pool: HashPool;
  readonly throttle: Throttle;

  private constructor(store: Store, private readonly metrics: Metrics, private readonly dummy: string, o: PasswordCheckOptions) {
    this.pool = new HashPool(o);
    this.throttle = new Throttle(store, { ...DEFAULT_THROTTLE, ...o.throttle });
  }

  /** Makes the dummy hash (one scrypt, ~30 ms) before the first join is taken. */
  static async start(store: Store, metrics: Metrics, o: PasswordCheckOptions = {}): Promise<PasswordCheck> {
    return new PasswordCheck(store, metrics, await hashPassword(randomBytes(32).toString('hex')), o);
  }

  async check(user: UserRow | undefined, userId: string, deviceId: string, password: string): Promise<PasswordVerdict> {
    const slot = this.pool.reserve();
    if (!slot) {
      this.metrics.count('kagi_password_busy_total');
      return { ok: false, code: 'busy', retryAfter: this.pool.retryAfterSeconds(), detail: `${this.pool.concurrency} password checks running and ${this.pool.maxWaiting} waiting` };
    }
    let waitMs: number;
    try {
      waitMs = await this.throttle.claim(userId, deviceId);
    } catch (e) {
      slot.release();
      throw e;
    }
    if (waitMs > 0) {
      slot.release();
      this.metrics.count('kagi_password_throttled_total');
      return { ok: false, code: 'throttled', retryAfter: Math.ceil(waitMs / 1000), detail: `too many failed attempts for user ${userId} or from device ${deviceId}` };
    }
    const matches = await slot.run(() => verifyPassword(password, user?.passwordHash ?? this.dummy));
    // The dummy's password is 32 random bytes nobody knows; an unknown user never passes.
    const ok = matches && user !== undefined;
    const result = ok ? 'ok' : user ? 'wrong-password' : 'unknown-user';
    this.metrics.count('kagi_password_checks_total', { result });
    if (result !== 'ok') {
      await this.throttle.failed(userId);
      return { ok: false, code: 'password', detail: result };
    }
    const cleared = this.throttle.succeeded(userId, deviceId);
    cleared.catch(() => {});
    return { ok: true, cleared };
  }
}
