/**
 * Liveness of VPN members (patent embodiment 4), one state machine per
 * member, driven by the config server:
 *
 *   ACTIVE ──poll unanswered──▶ MISSING(n) ──n reaches evictAfter──▶ EVICTED
 *     ▲                            │
 *     └──── answered (S402) or continue (S403) ──┘
 *
 * "Answered" means the member's holder (itself, or its relay) vouched for
 * it after the previous poll. A poll that was delivered (monitoring.ts
 * decides: the broker took it, and the holder is known to be on that
 * broker) counts as missed when the next poll is due and nothing vouched
 * since it went out; a poll that was not delivered counts nothing. A
 * MISSING member is "not communicating": the key server leaves it out of
 * rekeys until it answers. EVICTED is terminal: the config server runs
 * the leave steps and forgets the member; coming back means joining again.
 * Every change of the count is a transition, so the lease holder can keep
 * the counts in the store and a successor can resume them.
 */
export type LivenessState = 'ACTIVE' | 'MISSING' | 'EVICTED';

interface MemberLiveness {
  state: LivenessState;
  missed: number;
  /** When the last poll to its holder went out (ms), null = none yet. */
  polledAt: number | null;
  /** When its holder last vouched for it (ms), -Infinity = never. */
  vouchedAt: number;
}

export interface Transition {
  member: string;
  from: LivenessState;
  to: LivenessState;
  missed: number;
}

export class LivenessTable {
  private readonly m = new Map<string, MemberLiveness>();

  constructor(private readonly evictAfter: number) {
    if (!Number.isInteger(evictAfter) || evictAfter < 1) throw new RangeError('evictAfter must be a positive integer');
  }

  private get(member: string): MemberLiveness {
    let s = this.m.get(member);
    if (!s) {
      // A member we have not polled yet starts ACTIVE (just joined, or we restarted).
      s = { state: 'ACTIVE', missed: 0, polledAt: null, vouchedAt: -Infinity };
      this.m.set(member, s);
    }
    return s;
  }

  /**
   * A poll to the member's holder is due: the last delivered poll counts
   * as missed if nothing vouched since it went out.
   */
  due(member: string): Transition | null {
    const s = this.get(member);
    if (s.state === 'EVICTED' || s.polledAt === null || s.vouchedAt >= s.polledAt) return null;
    const from = s.state;
    s.missed++;
    s.state = s.missed >= this.evictAfter ? 'EVICTED' : 'MISSING';
    s.polledAt = null; // counted once
    return { member, from, to: s.state, missed: s.missed };
  }

  /** The poll sent at `at` reached the holder's broker: the next due() judges it. */
  delivered(member: string, at: number): void {
    const s = this.m.get(member);
    if (s && s.state !== 'EVICTED') s.polledAt = at;
  }

  /** The poll did not reach the holder's broker (or not one we know it uses): it proves nothing. */
  undelivered(member: string): void {
    const s = this.m.get(member);
    if (s) s.polledAt = null;
  }

  /** A delivered poll goes out now: due() and delivered() in one (what a poll round does when it reaches the holder). */
  polled(member: string, now: number): Transition | null {
    const t = this.due(member);
    this.delivered(member, now);
    return t;
  }

  /**
   * The count a previous lease holder left in the store (a restart, or
   * another instance's). Its next poll is judged as after a restart().
   */
  resume(member: string, missed: number): void {
    if (!Number.isInteger(missed) || missed < 1) return;
    const s = this.get(member);
    s.missed = Math.min(missed, this.evictAfter - 1);
    s.state = 'MISSING';
    s.polledAt = null;
  }

  /** The member's holder answered a poll or sent continue for it. */
  vouched(member: string, now: number): Transition | null {
    const s = this.get(member);
    s.vouchedAt = now;
    if (s.state !== 'MISSING') return null;
    const t = { member, from: s.state, to: 'ACTIVE' as const, missed: s.missed };
    s.state = 'ACTIVE';
    s.missed = 0;
    return t;
  }

  state(member: string): LivenessState | undefined {
    return this.m.get(member)?.state;
  }

  missed(member: string): number {
    return this.m.get(member)?.missed ?? 0;
  }

  /**
   * Our own link was down: polls that could not go out prove nothing, and
   * members need a moment to reconnect too. The next poll to each member
   * counts nothing; counting resumes from there.
   */
  restart(): void {
    for (const s of this.m.values()) s.polledAt = null;
  }

  /** The member is out of every VPN (left, evicted, revoked): start afresh next time. */
  forget(member: string): void {
    this.m.delete(member);
  }

  /**
   * With several config instances a join may be handled by another one: it
   * gives the member a fresh start in the store (communicating) and says
   * nothing to us, the lease holder. A member we hold MISSING that the
   * store calls communicating has joined again since we marked it: forget
   * it, so the polls it missed before joining cannot evict it now. A round's
   * own marks are written before the next round reads; a will-triggered
   * poll's mark may still be in flight, and then one miss is forgotten too:
   * eviction comes a poll later, never sooner. Returns the members so
   * forgotten.
   */
  rejoined(notCommunicating: ReadonlySet<string>): string[] {
    const out: string[] = [];
    for (const [member, s] of this.m) {
      if (s.state !== 'MISSING' || notCommunicating.has(member)) continue;
      this.m.delete(member);
      out.push(member);
    }
    return out;
  }

  /** Members no longer in any VPN are dropped from the table. */
  retain(members: Set<string>): void {
    for (const k of this.m.keys()) if (!members.has(k)) this.m.delete(k);
  }
}
