/**
 * Per-client quotas of the embedded broker: what one device may make the
 * broker (and the services behind it) do, however hostile it is.
 *
 *   rate      publishes per second, every topic (token bucket, 2 s burst)
 *   control   publishes per second to service topics: each may cost a
 *             service a decode, a store read or an HPKE open (bucket with
 *             a 10 s burst: a relay answering a rekey for many terminals)
 *   bytes     payload bytes per second (bucket, 2 s burst)
 *   inflight  QoS 1 publishes the broker has acknowledged and not yet
 *             delivered (a client that outruns its subscribers)
 *   retained  bytes of retained payload it holds on the broker
 *
 * Over a quota, a publish is dropped and counted by reason; a client that
 * stays over (drops for `overForMs` with no quiet second between) is told
 * to go (`disconnect`). The buckets are kept per client id across
 * reconnects, so reconnecting does not refill them. Defaults are well
 * above what an honest agent does (docs/decisions.md 102): one state topic,
 * a join's few requests, a 16 KiB-chunk tunnel, a relay's burst of acks.
 * The clock is injected; no timers.
 */

/** Why a publish over quota was dropped: a fixed set, so it can label a metric. */
export type QuotaReason = 'rate' | 'control' | 'bytes' | 'inflight' | 'retained';

export interface QuotaLimits {
  /** Publishes per second, all topics. */
  publishesPerSecond: number;
  /** Publishes per second to service topics (kagi/v1/svc/…). */
  controlPerSecond: number;
  /** Payload bytes per second, all topics. */
  bytesPerSecond: number;
  /** QoS 1 publishes acknowledged and still being delivered. */
  inflight: number;
  /** Retained payload bytes held for the client. */
  retainedBytes: number;
  /** Dropping this long without a quiet second: the client is disconnected (ms). */
  overForMs: number;
}

export const DEFAULT_QUOTA: Readonly<QuotaLimits> = {
  publishesPerSecond: 20_000,
  controlPerSecond: 100,
  bytesPerSecond: 64 * 1024 * 1024,
  inflight: 1000,
  retainedBytes: 1024,
  overForMs: 5000,
};

/** Burst of each bucket, in seconds of its rate. */
const BURST_S = 2;
const CONTROL_BURST_S = 10;
/** Drops this far apart end an over-quota streak (ms). */
const QUIET_MS = 1000;

class Bucket {
  private tokens: number;
  private at: number;
  constructor(private readonly rate: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.at = now;
  }
  /** Take `n` tokens if there are; a bucket of rate 0 is no limit. */
  take(n: number, now: number): boolean {
    if (this.rate <= 0) return true;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
  /** Full again (no use for a while): the client's state can be forgotten. */
  full(now: number): boolean {
    return this.rate <= 0 || this.tokens + ((now - this.at) / 1000) * this.rate >= this.burst;
  }
}

class ClientQuota {
  readonly all: Bucket;
  readonly control: Bucket;
  readonly bytes: Bucket;
  inflight = 0;
  /** Retained payload bytes by topic. */
  readonly retained = new Map<string, number>();
  overSince: number | null = null;
  lastDrop = 0;
  constructor(l: QuotaLimits, now: number) {
    this.all = new Bucket(l.publishesPerSecond, l.publishesPerSecond * BURST_S, now);
    this.control = new Bucket(l.controlPerSecond, l.controlPerSecond * CONTROL_BURST_S, now);
    this.bytes = new Bucket(l.bytesPerSecond, Math.max(l.bytesPerSecond * BURST_S, 2 * 65_536), now);
  }
}

export interface QuotaPublish {
  topic: string;
  bytes: number;
  qos: number;
  retain: boolean;
  /** A service topic (the control bucket applies). */
  control: boolean;
}

/** admit: go on; drop: drop it, counted; disconnect: drop it and close the client (it stayed over). */
export type QuotaVerdict = { admit: true } | { admit: false; reason: QuotaReason; disconnect: boolean };

export class Quotas {
  private readonly clients = new Map<string, ClientQuota>();
  readonly limits: QuotaLimits;

  constructor(limits: Partial<QuotaLimits> = {}, private readonly now: () => number = Date.now) {
    this.limits = { ...DEFAULT_QUOTA, ...limits };
  }

  private of(clientId: string, now: number): ClientQuota {
    let q = this.clients.get(clientId);
    if (!q) this.clients.set(clientId, (q = new ClientQuota(this.limits, now)));
    return q;
  }

  /** One publish of `clientId`: admitted (and accounted) or dropped. */
  admit(clientId: string, p: QuotaPublish): QuotaVerdict {
    const now = this.now();
    const q = this.of(clientId, now);
    const reason = this.over(q, p, now);
    if (!reason) {
      if (q.overSince !== null && now - q.lastDrop > QUIET_MS) q.overSince = null;
      if (p.qos > 0) q.inflight++;
      if (p.retain) q.retained.set(p.topic, p.bytes);
      return { admit: true };
    }
    if (q.overSince === null || now - q.lastDrop > QUIET_MS) q.overSince = now;
    q.lastDrop = now;
    // overForMs 0: no limit, as every quota's 0 (drops go on, no disconnect).
    return { admit: false, reason, disconnect: this.limits.overForMs > 0 && now - q.overSince >= this.limits.overForMs };
  }

  private over(q: ClientQuota, p: QuotaPublish, now: number): QuotaReason | null {
    if (p.qos > 0 && this.limits.inflight > 0 && q.inflight >= this.limits.inflight) return 'inflight';
    if (p.retain && this.limits.retainedBytes > 0) {
      let held = p.bytes - (q.retained.get(p.topic) ?? 0);
      for (const n of q.retained.values()) held += n;
      if (held > this.limits.retainedBytes) return 'retained';
    }
    // Order matters only for which reason is counted; a refused take costs no tokens.
    if (!q.all.take(1, now)) return 'rate';
    if (p.control && !q.control.take(1, now)) return 'control';
    if (!q.bytes.take(p.bytes, now)) return 'bytes';
    return null;
  }

  /** A QoS 1 publish of `clientId` was delivered (aedes's `published`). */
  delivered(clientId: string): void {
    const q = this.clients.get(clientId);
    if (q && q.inflight > 0) q.inflight--;
  }

  /**
   * The client's connection closed: nothing of its is in flight any more.
   * Its buckets stay (a reconnect does not refill them) until they are
   * full again; `sweep` forgets those.
   */
  closed(clientId: string): void {
    const q = this.clients.get(clientId);
    if (q) q.inflight = 0;
  }

  /**
   * Forget disconnected clients whose buckets are full: memory bounded by
   * the recently active. What they retain is forgotten too: a device may
   * retain only its own state topic (publish-policy.ts), within its size,
   * so counting again from nothing lets it hold no more than that one
   * topic, which its next retained publish replaces. (Keeping clients for
   * what they retain kept one entry per device ever connected, since every
   * agent retains its state.)
   */
  sweep(connected: (clientId: string) => boolean): void {
    const now = this.now();
    for (const [id, q] of this.clients) {
      if (connected(id) || q.inflight > 0) continue;
      if (q.all.full(now) && q.control.full(now) && q.bytes.full(now)) this.clients.delete(id);
    }
  }

  /** Clients with quota state (tests, the flood bench's memory). */
  get size(): number {
    return this.clients.size;
  }
}
