/**
 * Answers the config server sent to device requests, kept for a minute by
 * the request's HPKE enc (unique to each sealing), so that a copy of a
 * request gets the same answer again instead of nothing.
 *
 * Why: an agent whose connection drops while its request is out publishes
 * the request again, byte for byte, when it is back (Peer.resend). If the
 * first copy was answered while the agent was away, the answer was lost
 * with the connection (a clean session keeps nothing), and the copy is a
 * replay the auth server refuses without a word: the agent waited its
 * whole timeout (a minute in bench:storm's tails, decision 113). The same
 * bytes sent again tell nobody anything new (only the requester can open
 * them, and anyone could replay them), and cost no crypto.
 *
 * Bounded: at most `max` answers, each for `ttlMs` (the time a request stays
 * acceptable), oldest first out; expired ones are swept as time goes on,
 * so an idle server keeps none.
 */
export interface Answer {
  /** Who sent the request (a copy from anyone else gets nothing). */
  from: string;
  /** Where the answer went (the device, or the relay for its port). */
  to: string;
  bytes: Uint8Array;
}

export class Answers {
  private readonly m = new Map<string, Answer & { at: number }>();

  constructor(
    private readonly max = 4096,
    private readonly ttlMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  keep(enc: string, a: Answer): void {
    this.sweep();
    this.m.delete(enc);
    if (this.m.size >= this.max) this.m.delete(this.m.keys().next().value!);
    this.m.set(enc, { ...a, at: this.now() });
  }

  /** The answer to the request with this enc, if it came from `from` and is still kept. */
  find(enc: string, from: string): Answer | undefined {
    this.sweep();
    const a = this.m.get(enc);
    return a && a.from === from ? a : undefined;
  }

  /** Drop expired answers (kept in the order they were sent: from the front). */
  sweep(): void {
    const before = this.now() - this.ttlMs;
    for (const [enc, a] of this.m) {
      if (a.at > before) break;
      this.m.delete(enc);
    }
  }

  get size(): number {
    return this.m.size;
  }
}
