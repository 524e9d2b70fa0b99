/**
 * A member's send rate for one VPN (embodiment 5, on the MQTT data plane,
 * so a deployment without tc is still shaped): a token bucket of the rate
 * the bandwidth plan gives the VPN, with a burst of BURST_MS of it. A frame
 * takes its tokens (the bucket may go into debt) and waits until the debt
 * is paid, up to MAX_WAIT_MS; beyond that it is dropped, as a full queue
 * drops, and the streams above retransmit. A cut VPN sends
 * nothing until the plan restores it.
 */
export const BURST_MS = 100;
export const MAX_WAIT_MS = 1_000;
/** The burst is never below one MTU-sized frame. */
const MIN_BURST_BITS = 1_500 * 8;

export type Admission = { ok: true; waitMs: number } | { ok: false; reason: 'cut' | 'rate' };

export class Shaper {
  private rate = 0; // bits/s, 0 = unlimited
  private cut = false;
  private tokens = 0;
  private at = 0;

  /** The plan's rate (bits/s; 0 = unlimited) and whether the VPN is cut. */
  set(rate: number, cut: boolean, now: number): void {
    this.refill(now);
    const changed = this.rate !== Math.max(0, rate);
    this.rate = Math.max(0, rate);
    this.cut = cut;
    // A new rate starts with a full burst; the same rate keeps its state.
    this.tokens = changed ? this.burst() : Math.min(this.tokens, this.burst());
  }

  get state(): { rate: number; cut: boolean } {
    return { rate: this.rate, cut: this.cut };
  }

  private burst(): number {
    return Math.max(MIN_BURST_BITS, (this.rate * BURST_MS) / 1000);
  }

  private refill(now: number): void {
    if (this.rate > 0) this.tokens = Math.min(this.burst(), this.tokens + ((now - this.at) * this.rate) / 1000);
    this.at = now;
  }

  /** May `bytes` go, and after how long? Reserves the tokens when it may. */
  admit(bytes: number, now: number): Admission {
    if (this.cut) return { ok: false, reason: 'cut' };
    if (this.rate === 0) return { ok: true, waitMs: 0 };
    this.refill(now);
    const after = this.tokens - bytes * 8;
    const waitMs = after >= 0 ? 0 : (-after * 1000) / this.rate;
    if (waitMs > MAX_WAIT_MS) return { ok: false, reason: 'rate' };
    this.tokens = after;
    return { ok: true, waitMs };
  }
}
