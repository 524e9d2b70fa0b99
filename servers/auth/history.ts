/**
 * What `kagi why` reads about a device's last authentications (issue 24):
 * the auth server records its verdicts in the store's device_history, the
 * last accepted one and the last refusal per device.
 *
 * Only verdicts on requests auth.ts authenticated and found fresh come
 * here (nothing an attacker can send in another device's name: no unknown
 * id, bad credential, stale or replayed request). Some of those refusals
 * still cost a sender no hash (throttled, busy), so one device can draw
 * them as fast as it likes: a refusal with the same code as the one this
 * process recorded for the device less than REPEAT_MS ago is not written
 * again. The map is bounded (MAX_DEVICES, then it starts afresh).
 */
import type { Body } from '../../protocol/body.js';
import type { ServiceContext } from '../service-host.js';

/** A repeat of the same refusal for a device within this long is not written again. */
export const REPEAT_MS = 1000;
const MAX_DEVICES = 10_000;

export class AuthHistory {
  private readonly lastRefusal = new Map<string, { code: string; at: number }>();

  constructor(private readonly ctx: Pick<ServiceContext, 'store' | 'log'>, private readonly now: () => number = Date.now) {}

  /**
   * Record one verdict about `about.device` (and `about.user` for a join).
   * A store failure is logged, never thrown: the verdict goes out anyway.
   */
  async note(about: Body, op: 'config' | 'join', verdict: Body): Promise<void> {
    const device = typeof about.device === 'string' ? about.device : undefined;
    if (!device) return;
    const at = this.now();
    try {
      if (verdict.ok === true) {
        this.lastRefusal.delete(device);
        await this.ctx.store.noteAuth(device, at, op, typeof about.user === 'string' ? about.user : null);
        return;
      }
      const code = String(verdict.code);
      const last = this.lastRefusal.get(device);
      if (last && last.code === code && at - last.at < REPEAT_MS) return;
      if (this.lastRefusal.size >= MAX_DEVICES) this.lastRefusal.clear();
      this.lastRefusal.set(device, { code, at });
      await this.ctx.store.noteRefusal(device, { at, code, reason: String(verdict.reason), user: typeof about.user === 'string' ? about.user : null });
    } catch (e) {
      this.ctx.log('warn', `auth: recording ${op} of ${device} for kagi why: ${(e as Error).message}`);
    }
  }
}
