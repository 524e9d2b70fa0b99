/**
 * What a holder's `poll.reply` or `continue` may make the config server do
 * about keys it still claims for VPNs its member is no longer in (evicted
 * while frozen, or the VPN deleted): tell it once, not once per claim.
 *
 * Each notice is an HPKE seal and a pending request, so the work must not
 * follow what the sender lists (issue 23: two `continue`s naming 4,000
 * made-up VPNs cost 8,002 seals). A claim is de-duplicated, only its first
 * MAX_VPNS_PER_MEMBER VPNs are looked at, at most MAX_NOTICES_PER_MESSAGE
 * notices go out per message and MAX_NOTICES_PER_MEMBER per member in a
 * TOLD_TTL_MS, and a (member, VPN) told in the last TOLD_TTL_MS is ignored:
 * an honest agent drops the keys when told, so what it still claims after
 * that is either a notice still on its way or noise. (Notices the store
 * owes, for evictions and deletions, go out from membership.ts with their
 * own retries: this is only the fallback for an agent that missed them.)
 * The memory is bounded (oldest forgotten first).
 */

/** VPNs of one member's claim that are looked at (more are ignored). */
export const MAX_VPNS_PER_MEMBER = 256;
/** Notices one message can cause. */
export const MAX_NOTICES_PER_MESSAGE = 4;
/** Notices one member can cause in a TOLD_TTL_MS. */
export const MAX_NOTICES_PER_MEMBER = 8;
/** Members one message may list (a longer list refuses the message whole): a relay's terminals fit. */
export const MAX_MEMBERS_PER_MESSAGE = 4096;
/** A (member, VPN) told is not told again for this long (ms). */
export const TOLD_TTL_MS = 60_000;
/** (member, VPN) pairs remembered at most. */
const TOLD_MAX = 10_000;

export class StaleClaims {
  private readonly told = new Map<string, number>();
  /** Per member: when its current window began and the notices in it. */
  private readonly perMember = new Map<string, { since: number; n: number }>();
  /** Notices left for the message being handled. */
  private budget = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** A new message: its notice budget. */
  startMessage(): void {
    this.budget = MAX_NOTICES_PER_MESSAGE;
  }

  /**
   * Of the VPNs `member` claims keys for, the ones to tell it it is out of
   * now: not among `mine`, de-duplicated, not told lately, within the
   * message's budget. Each returned one is remembered as told.
   */
  toTell(member: string, claimed: readonly string[], mine: ReadonlySet<string>): string[] {
    const now = this.now();
    const out: string[] = [];
    let m = this.perMember.get(member);
    if (!m || now - m.since >= TOLD_TTL_MS) {
      this.perMember.delete(member); // re-insert: oldest first
      this.perMember.set(member, (m = { since: now, n: 0 }));
      if (this.perMember.size > TOLD_MAX) this.perMember.delete(this.perMember.keys().next().value!);
    }
    for (const vpn of new Set(claimed.slice(0, MAX_VPNS_PER_MEMBER))) {
      if (mine.has(vpn)) continue;
      if (this.budget <= 0 || m.n >= MAX_NOTICES_PER_MEMBER) break;
      const key = `${member}\n${vpn}`;
      const at = this.told.get(key);
      if (at !== undefined && now - at < TOLD_TTL_MS) continue;
      this.told.delete(key); // re-insert: the Map's order is the age order
      this.told.set(key, now);
      if (this.told.size > TOLD_MAX) this.told.delete(this.told.keys().next().value!);
      this.budget--;
      m.n++;
      out.push(vpn);
    }
    return out;
  }

  /** Pairs remembered (tests). */
  get size(): number {
    return this.told.size;
  }
}
