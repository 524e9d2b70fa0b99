/**
 * The console's charts (servers/console/fleet-feed.ts): counters as rates,
 * gauges as they are, and the histograms (join latency, rekey duration,
 * poll round time) as the mean of what each interval observed, from the
 * same Metrics the services count into.
 */
import t from 'tap';
import { FleetFeed } from '../../servers/console/fleet-feed.js';
import { Metrics } from '../../servers/metrics.js';
import type { Store } from '../../servers/store/store.js';
import { deadline } from '../helpers/deadline.js';

t.test('histograms are charted as the mean of each interval, in ms; none observed is a gap', async (t) => {
  const m = new Metrics();
  const feed = new FleetFeed({ store: {} as Store, metrics: m, recent: { list: () => [] } as never, tickMs: 3_600_000, sampleMs: 50 });
  t.teardown(() => feed.close());
  const column = (label: string) => {
    const r = feed.rates();
    return r.v[r.series.indexOf(label)]!;
  };
  const until = async (ok: () => boolean) => {
    const end = Date.now() + deadline(5000);
    while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    return ok();
  };
  t.same(feed.rates().series, ['joins/s', 'evictions/s', 'frames/s', 'connected', 'join ms', 'rekey ms', 'poll round ms'], 'the charted series');
  t.ok(await until(() => column('join ms').length > 0), 'sampled');
  t.ok(column('join ms').every((x) => x === null), 'no join observed: gaps, not zeros');
  m.observe('kagi_join_seconds', 0.04);
  m.observe('kagi_join_seconds', 0.06);
  m.count('kagi_joins_total', {}, 2);
  t.ok(await until(() => column('join ms').some((x) => x !== null)), 'the joins show in the next sample');
  const joined = column('join ms').find((x) => x !== null)!;
  t.ok(Math.abs(joined - 50) < 1e-6, `the mean of the interval's joins: 50 ms (got ${joined})`);
  t.ok(column('joins/s').some((x) => x !== null && x > 0), 'and the joins counter as a rate');
  t.ok(column('rekey ms').every((x) => x === null), 'no rekey observed: still a gap');
  t.same(m.observed('kagi_join_seconds'), { sum: 0.1, count: 2 }, 'Metrics keeps the totals it charts');
});
