/**
 * The control plane's metrics, through prom-client (the library Prometheus
 * users expect), served on `kagi up --metrics-port N` at /metrics: kagi's
 * own counters and gauges (METRICS), three histograms (HISTOGRAMS: join
 * latency, rekey duration, poll round time) and prom-client's default
 * process metrics (CPU, resident memory, event-loop lag, GC).
 *
 * Counters are incremented where things happen; gauges are set when they
 * change or read when scraped. Label values come from small fixed sets
 * (refusal codes, rekey reasons, drop reasons), never from ids, so the
 * series count stays bounded. Each Metrics has a registry of its own (a
 * test process runs several control planes); the default process metrics
 * are one registry per process, made when the first /metrics is served.
 *
 * A metric is declared by adding it to METRICS (its label names in
 * `labels`, if it has any; one that has none declared takes the names of
 * its first use) and counted with `count`: nothing else to register.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

type Labels = Record<string, string>;

interface MetricDef {
  readonly type: 'counter' | 'gauge';
  readonly help: string;
  /** Label names, when it has labels. */
  readonly labels?: readonly string[];
}

/** Every counter and gauge kagi exports, with its help text: one list, so /metrics always shows them all. */
export const METRICS = {
  kagi_connected_clients: { type: 'gauge', help: 'MQTT clients connected to the embedded broker' },
  kagi_requests_waiting: { type: 'gauge', help: 'Device requests (config, join) waiting at the config server for one of its admission places (decision 128)' },
  kagi_joins_total: { type: 'counter', help: 'Devices that joined their VPNs' },
  kagi_refusals_total: { type: 'counter', help: 'Device requests refused, by reason', labels: ['reason'] },
  kagi_password_checks_total: { type: 'counter', help: 'Passwords hashed and checked at joins, by result (ok, wrong-password, unknown-user)', labels: ['result'] },
  kagi_password_throttled_total: { type: 'counter', help: 'Joins refused throttled (too many failed attempts for the user or from the device), before any hash' },
  kagi_password_busy_total: { type: 'counter', help: 'Joins refused busy (the password hash queue was full)' },
  kagi_rekeys_total: { type: 'counter', help: 'VPN rekeys, by why (periodic, requested, leave reasons)', labels: ['why'] },
  kagi_evictions_total: { type: 'counter', help: 'Members evicted for missing polls' },
  kagi_frames_forwarded_total: { type: 'counter', help: 'VPN frames the embedded broker forwarded to a subscriber' },
  kagi_frames_dropped_total: { type: 'counter', help: 'VPN frames the embedded broker dropped, by reason', labels: ['reason'] },
  kagi_broker_refused_total: { type: 'counter', help: 'Device publishes the embedded broker refused, closing the connection, by reason (topic, retain, size, acl)', labels: ['reason'] },
  kagi_broker_dropped_total: { type: 'counter', help: 'Device publishes the embedded broker dropped over a per-client quota, by reason (rate, control, bytes, inflight, retained)', labels: ['reason'] },
  kagi_broker_disconnects_total: { type: 'counter', help: 'Clients the embedded broker disconnected for staying over a quota, by reason', labels: ['reason'] },
  kagi_messages_dropped_total: { type: 'counter', help: "Control messages a service dropped, by reason: replay (seen, or older than the window), unexpected (a reply to another instance's request), not-leader (taken by the lease holder), auth, key, …", labels: ['service', 'reason'] },
  kagi_admin_ops_total: { type: 'counter', help: 'Remote admin operations answered, by op and result (ok, refused)', labels: ['op', 'result'] },
  kagi_tickets_issued_total: { type: 'counter', help: 'Resumption tickets issued, by how (password: a join with the password; rotation: a ticket re-join)', labels: ['how'] },
  kagi_ticket_joins_total: { type: 'counter', help: 'Joins made with a resumption ticket instead of the password (no scrypt)' },
  kagi_ticket_thefts_total: { type: 'counter', help: 'Retired tickets presented again (a copied ticket): the pair\'s tickets were revoked' },
  kagi_external_broker_dropped: { type: 'gauge', help: 'Messages an external Mosquitto says it dropped since it started ($SYS/broker/publish/messages/dropped): clients whose queue was full (max_queued_messages)' },
  kagi_lease_held: { type: 'gauge', help: "1 where this instance holds the lease of a service's once-only duties (polls, leave steps, periodic rekeys)", labels: ['service'] },
} as const satisfies Record<string, MetricDef>;

export type MetricName = keyof typeof METRICS;

/** Histograms (seconds), with buckets for what each measures. */
export const HISTOGRAMS = {
  kagi_join_seconds: {
    help: 'Join latency at the config server: from a join request reaching it to its join.response sent (the password check, the network devices, key delivery and acknowledgement)',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  },
  kagi_rekey_seconds: {
    help: 'Rekey duration at the key server: from a new epoch made to every communicating member acknowledged (or failed)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  },
  kagi_poll_round_seconds: {
    help: "Poll round time at the config server's lease holder: from a round's start to its last poll handed to the broker (spread over half the poll interval)",
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 15, 30, 60],
  },
} as const;

export type HistogramName = keyof typeof HISTOGRAMS;

/**
 * A label set's names (sorted, comma-joined) and its series key, in one
 * pass: count() runs per forwarded frame, and a JSON.stringify per call
 * was its largest cost (bench/metrics.ts, decision 81).
 */
function keyOf(l: Labels): { names: string; series: string } {
  const ks = Object.keys(l);
  if (ks.length === 0) return NO_LABELS;
  if (ks.length > 1) ks.sort();
  let series = '';
  for (const k of ks) series += `${k}=${l[k]}\u0000`;
  return { names: ks.join(','), series };
}
const NO_LABELS = { names: '', series: '' };

type Family = Counter | Gauge;

export class Metrics {
  /** This instance's kagi metrics. */
  readonly registry = new Registry();
  private readonly families = new Map<MetricName, Family>();
  /** Label names each family was made with, sorted and comma-joined. */
  private readonly labelNames = new Map<MetricName, string>();
  /** What value() reads, per series: prom-client's own reads are async. */
  private readonly values = new Map<MetricName, Map<string, number>>();
  private readonly readers = new Map<MetricName, () => number>();
  private readonly histograms = new Map<HistogramName, Histogram>();
  /** Sum and count per histogram, all labels together: what observed() reads (the console's charts). */
  private readonly totals = new Map<HistogramName, { sum: number; count: number }>();

  constructor() {
    for (const [name, m] of Object.entries(METRICS) as [MetricName, MetricDef][]) this.make(name, m.labels ?? []);
    for (const [name, h] of Object.entries(HISTOGRAMS) as [HistogramName, (typeof HISTOGRAMS)[HistogramName]][]) {
      this.histograms.set(name, new Histogram({ name, help: h.help, buckets: [...h.buckets], registers: [this.registry] }));
    }
  }

  private make(name: MetricName, labelNames: readonly string[]): Family {
    const def: MetricDef = METRICS[name];
    const readers = this.readers;
    const common = { name, help: def.help, labelNames: [...labelNames], registers: [this.registry] };
    const f: Family = def.type === 'counter'
      ? new Counter(common)
      : new Gauge({
        ...common,
        // A gauge read at scrape time (gauge()) is set just before it is rendered.
        collect() {
          const read = readers.get(name);
          if (read) this.set(read());
        },
      });
    // A family with no labels shows 0 before anything happens (a scrape that
    // sees no sample cannot tell "none yet" from "not exported").
    if (labelNames.length === 0) (f as Counter).inc(0);
    this.families.set(name, f);
    this.labelNames.set(name, [...labelNames].sort().join(','));
    return f;
  }

  /**
   * The family for these labels. A metric declared without labels takes
   * the names of its first labelled use (nothing was counted on it yet);
   * any other mismatch is a programming error, and throws.
   */
  private family(name: MetricName, names: string): Family {
    const have = this.labelNames.get(name)!;
    if (names === have) return this.families.get(name)!;
    if (have === '' && !(this.values.get(name)?.size)) {
      this.registry.removeSingleMetric(name);
      return this.make(name, names.split(','));
    }
    throw new Error(`metrics: ${name} has labels [${have}], not [${names}]`);
  }

  /** The copy value() reads. */
  private series(name: MetricName): Map<string, number> {
    let m = this.values.get(name);
    if (!m) this.values.set(name, (m = new Map()));
    return m;
  }

  count(name: MetricName, labels: Labels = {}, by = 1): void {
    const k = keyOf(labels);
    (this.family(name, k.names) as Counter).inc(labels, by);
    const m = this.series(name);
    m.set(k.series, (m.get(k.series) ?? 0) + by);
  }

  /** A gauge with labels, set when it changes. */
  set(name: MetricName, value: number, labels: Labels = {}): void {
    const k = keyOf(labels);
    (this.family(name, k.names) as Gauge).set(labels, value);
    this.series(name).set(k.series, value);
  }

  /** A gauge read at scrape time. */
  gauge(name: MetricName, read: () => number): void {
    this.readers.set(name, read);
  }

  /** One observation (seconds) of a histogram. */
  observe(name: HistogramName, seconds: number, labels: Labels = {}): void {
    this.histograms.get(name)!.observe(labels, seconds);
    const t = this.totals.get(name) ?? { sum: 0, count: 0 };
    this.totals.set(name, { sum: t.sum + seconds, count: t.count + 1 });
  }

  /** A histogram's sum (s) and count so far, every label together (prom-client's own read is async). */
  observed(name: HistogramName): { sum: number; count: number } {
    return this.totals.get(name) ?? { sum: 0, count: 0 };
  }

  /** The current value of one series (tests, status). */
  value(name: MetricName, labels: Labels = {}): number {
    const read = this.readers.get(name);
    return read && Object.keys(labels).length === 0 ? read() : (this.values.get(name)?.get(keyOf(labels).series) ?? 0);
  }

  /** The Prometheus text format of kagi's metrics, and (with `withDefaults`) the process's default metrics. */
  async render(withDefaults = false): Promise<string> {
    const own = await this.registry.metrics();
    return withDefaults ? `${own}\n${await processMetrics().metrics()}` : own;
  }
}

let defaults: Registry | undefined;

/** prom-client's default metrics (CPU, memory, event-loop lag, GC, handles): one registry per process. */
export function processMetrics(): Registry {
  if (!defaults) {
    defaults = new Registry();
    collectDefaultMetrics({ register: defaults });
  }
  return defaults;
}

/** GET /metrics on `port` (0 = any free port); resolves with the bound port. */
export function serveMetrics(metrics: Metrics, host: string, port: number): Promise<{ port: number; close(): Promise<void> }> {
  processMetrics(); // from now on: the event-loop lag and GC are measured from the start
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('kagi: metrics are at /metrics\n');
      return;
    }
    metrics.render(true).then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`kagi: metrics failed: ${e.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? new Error(`metrics port ${port} on ${host} is in use: choose another with --metrics-port N`) : e));
    server.listen(port, host, () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}
