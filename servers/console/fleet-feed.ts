/**
 * What the console's pages watch, pushed rather than polled by the page:
 *  - `fleet`: kagi status's view (servers/status-view.ts), the audit log
 *    and the recent refusals and evictions, read from the tables every
 *    tick while anyone watches, sent only when it changed;
 *  - `rates`: per-second rates from the metrics (servers/metrics.ts, read
 *    through its public value()), sampled every second from the start so
 *    a page opened later still sees the last minutes.
 * The HTTP side (server.ts) turns each into a server-sent event.
 */
import type { HistogramName, Metrics, MetricName } from '../metrics.js';
import type { Store } from '../store/store.js';
import { statusView } from '../status-view.js';
import type { RecentEvents } from './recent.js';

/**
 * The charted series: counters as rates per second, gauges as they are,
 * histograms (join latency, rekey duration, poll round time) as the mean
 * of what was observed in each interval, in ms (null: nothing observed).
 */
export const RATE_SERIES: ({ name: MetricName; label: string; kind: 'rate' | 'gauge' } | { name: HistogramName; label: string; kind: 'mean' })[] = [
  { name: 'kagi_joins_total', label: 'joins/s', kind: 'rate' },
  { name: 'kagi_evictions_total', label: 'evictions/s', kind: 'rate' },
  { name: 'kagi_frames_forwarded_total', label: 'frames/s', kind: 'rate' },
  { name: 'kagi_connected_clients', label: 'connected', kind: 'gauge' },
  { name: 'kagi_join_seconds', label: 'join ms', kind: 'mean' },
  { name: 'kagi_rekey_seconds', label: 'rekey ms', kind: 'mean' },
  { name: 'kagi_poll_round_seconds', label: 'poll round ms', kind: 'mean' },
];
const KEEP_SAMPLES = 300;
/** The most of the process's time the live view may spend reading the tables, on a large fleet. */
export const READ_SHARE = 0.2;
const AUDIT_ROWS = 50;

export type FeedEvent = { event: 'fleet' | 'rates'; data: string };

export interface FeedOptions {
  store: Store;
  metrics: Metrics;
  recent: RecentEvents;
  tickMs?: number;
  sampleMs?: number;
  log?: (level: 'warn', msg: string) => void;
}

export class FleetFeed {
  private readonly watchers = new Set<(e: FeedEvent) => void>();
  private lastFleet: string | null = null;
  private readonly samples: { t: number[]; v: (number | null)[][] } = { t: [], v: RATE_SERIES.map(() => []) };
  /** Last sample's readings: a counter's value, or a histogram's [sum, count]. */
  private prev: [number, number][] | null = null;
  private readonly timers: NodeJS.Timeout[] = [];
  private reading = false;
  /** No periodic read before this time (ms): see READ_SHARE. */
  private notBefore = 0;

  constructor(private readonly o: FeedOptions) {
    this.timers.push(setInterval(() => void this.tick(), o.tickMs ?? 500), setInterval(() => this.sample(), o.sampleMs ?? 1000));
    for (const t of this.timers) t.unref();
  }

  /** Watch the feed: the current state comes at once, then every change. Returns the unwatch. */
  watch(send: (e: FeedEvent) => void): () => void {
    this.watchers.add(send);
    send({ event: 'rates', data: JSON.stringify(this.rates()) });
    if (this.lastFleet) send({ event: 'fleet', data: this.lastFleet });
    void this.tick(true);
    return () => this.watchers.delete(send);
  }

  /** Read the tables now (after an action, so the page sees its effect without waiting a tick). */
  poke(): Promise<void> {
    return this.tick(true);
  }

  async fleet(): Promise<unknown> {
    const [status, audit] = await Promise.all([statusView(this.o.store), this.o.store.auditLog(AUDIT_ROWS)]);
    return { status, audit, recent: this.o.recent.list(), at: new Date().toISOString() };
  }

  rates(): { series: string[]; t: number[]; v: (number | null)[][] } {
    return { series: RATE_SERIES.map((s) => s.label), t: this.samples.t, v: this.samples.v };
  }

  close(): void {
    for (const t of this.timers) clearInterval(t);
    this.watchers.clear();
  }

  private async tick(force = false): Promise<void> {
    if (this.watchers.size === 0 || (this.reading && !force) || (!force && Date.now() < this.notBefore)) return;
    this.reading = true;
    const t0 = Date.now();
    try {
      const f = await this.fleet();
      // The SQLite reads block the services' event loop (bench:console: ~0.1 s
      // at 10,000 devices): leave READ_SHARE of the time at most to the console.
      this.notBefore = Date.now() + (Date.now() - t0) * (1 / READ_SHARE - 1);
      // `at` changes every time: compare without it.
      const text = JSON.stringify(f);
      const same = this.lastFleet !== null && this.lastFleet.replace(/"at":"[^"]*"}$/, '') === text.replace(/"at":"[^"]*"}$/, '');
      this.lastFleet = text;
      if (!same || force) for (const w of this.watchers) w({ event: 'fleet', data: text });
    } catch (e) {
      this.o.log?.('warn', `console: reading the fleet: ${(e as Error).message}`);
    } finally {
      this.reading = false;
    }
  }

  private sample(): void {
    const now = RATE_SERIES.map((s): [number, number] => {
      if (s.kind !== 'mean') return [this.o.metrics.value(s.name), 0];
      const o = this.o.metrics.observed(s.name);
      return [o.sum, o.count];
    });
    const secs = (this.o.sampleMs ?? 1000) / 1000;
    const point = (kind: 'rate' | 'gauge' | 'mean', [v, n]: [number, number], [pv, pn]: [number, number]): number | null => {
      if (kind === 'gauge') return v;
      if (kind === 'rate') return Math.max(0, (v - pv) / secs);
      return n > pn ? (1000 * (v - pv)) / (n - pn) : null;
    };
    if (this.prev) {
      this.samples.t.push(Math.round(Date.now() / 1000));
      RATE_SERIES.forEach((s, i) => this.samples.v[i]!.push(point(s.kind, now[i]!, this.prev![i]!)));
      if (this.samples.t.length > KEEP_SAMPLES) {
        this.samples.t.shift();
        for (const v of this.samples.v) v.shift();
      }
      const data = JSON.stringify(this.rates());
      for (const w of this.watchers) w({ event: 'rates', data });
    }
    this.prev = now;
  }
}
