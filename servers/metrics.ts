/**
 * The control plane's metrics in the Prometheus text format (0.0.4), served
 * on `kagi up --metrics-port N` at /metrics. Counters are incremented where
 * things happen; gauges are read when scraped. Label values come from small
 * fixed sets (refusal codes, rekey reasons, drop reasons), never from ids,
 * so the series count stays bounded.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

type Labels = Record<string, string>;

interface Family {
  help: string;
  type: 'counter' | 'gauge';
  values: Map<string, number>;
  read?: () => number;
}

/** Every metric kagi exports, with its help text: one list, so /metrics always shows them all. */
export const METRICS = {
  kagi_connected_clients: { type: 'gauge', help: 'MQTT clients connected to the embedded broker' },
  kagi_joins_total: { type: 'counter', help: 'Devices that joined their VPNs' },
  kagi_refusals_total: { type: 'counter', help: 'Device requests refused, by reason' },
  kagi_password_checks_total: { type: 'counter', help: 'Passwords hashed and checked at joins, by result (ok, wrong-password, unknown-user)' },
  kagi_password_throttled_total: { type: 'counter', help: 'Joins refused throttled (too many failed attempts for the user or from the device), before any hash' },
  kagi_password_busy_total: { type: 'counter', help: 'Joins refused busy (the password hash queue was full)' },
  kagi_rekeys_total: { type: 'counter', help: 'VPN rekeys, by why (periodic, requested, leave reasons)' },
  kagi_evictions_total: { type: 'counter', help: 'Members evicted for missing polls' },
  kagi_frames_forwarded_total: { type: 'counter', help: 'VPN frames the embedded broker forwarded to a subscriber' },
  kagi_frames_dropped_total: { type: 'counter', help: 'VPN frames the embedded broker dropped, by reason' },
  kagi_messages_dropped_total: { type: 'counter', help: "Control messages a service dropped, by reason: replay (seen, or older than the window), unexpected (a reply to another instance's request), not-leader (taken by the lease holder), auth, key, …" },
  kagi_admin_ops_total: { type: 'counter', help: 'Remote admin operations answered, by op and result (ok, refused)' },
  kagi_tickets_issued_total: { type: 'counter', help: 'Resumption tickets issued, by how (password: a join with the password; rotation: a ticket re-join)' },
  kagi_ticket_joins_total: { type: 'counter', help: 'Joins made with a resumption ticket instead of the password (no scrypt)' },
  kagi_ticket_thefts_total: { type: 'counter', help: 'Retired tickets presented again (a copied ticket): the pair\'s tickets were revoked' },
  kagi_lease_held: { type: 'gauge', help: "1 where this instance holds the lease of a service's once-only duties (polls, leave steps, periodic rekeys)" },
} as const;

export type MetricName = keyof typeof METRICS;

const labelText = (l: Labels) => {
  const keys = Object.keys(l).sort();
  return keys.length ? `{${keys.map((k) => `${k}="${l[k]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',')}}` : '';
};

export class Metrics {
  private readonly families = new Map<MetricName, Family>();

  constructor() {
    for (const [name, m] of Object.entries(METRICS)) this.families.set(name as MetricName, { help: m.help, type: m.type, values: new Map() });
  }

  count(name: MetricName, labels: Labels = {}, by = 1): void {
    const f = this.families.get(name)!;
    const k = labelText(labels);
    f.values.set(k, (f.values.get(k) ?? 0) + by);
  }

  /** A gauge with labels, set when it changes. */
  set(name: MetricName, value: number, labels: Labels = {}): void {
    this.families.get(name)!.values.set(labelText(labels), value);
  }

  /** A gauge read at scrape time. */
  gauge(name: MetricName, read: () => number): void {
    this.families.get(name)!.read = read;
  }

  /** The current value of one series (tests, status). */
  value(name: MetricName, labels: Labels = {}): number {
    const f = this.families.get(name)!;
    return f.read && Object.keys(labels).length === 0 ? f.read() : (f.values.get(labelText(labels)) ?? 0);
  }

  render(): string {
    const out: string[] = [];
    for (const [name, f] of this.families) {
      out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`);
      if (f.read) out.push(`${name} ${f.read()}`);
      else if (f.values.size === 0) out.push(`${name} 0`);
      else for (const [labels, v] of f.values) out.push(`${name}${labels} ${v}`);
    }
    return `${out.join('\n')}\n`;
  }
}

/** GET /metrics on `port` (0 = any free port); resolves with the bound port. */
export function serveMetrics(metrics: Metrics, host: string, port: number): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('kagi: metrics are at /metrics\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(metrics.render());
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
