/**
 * Operations on the real control plane: /metrics scraped over HTTP and
 * parsed with a Prometheus text-format parser (joins, refusals by reason,
 * frames, rekeys, evictions, connected clients), and kagi device revoke
 * (disconnected, out of its VPN, the VPN rekeyed, never admitted again).
 */
import t from 'tap';
// @ts-expect-error -- the parser ships no types; its output is checked below
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { agent, controlPlane, device, joinedAgent, logged, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { revokeDevice } from '../../servers/admin.js';
import { HISTOGRAMS, METRICS } from '../../servers/metrics.js';
import { kagiIn } from '../helpers/cli.js';

const enc = new TextEncoder();

interface Family { name: string; type: string; metrics: { value?: string; labels?: Record<string, string>; count?: string; sum?: string; buckets?: Record<string, string> }[] }

async function scrape(url: string): Promise<Map<string, Family>> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  const text = await res.text();
  return new Map((parsePrometheusTextFormat(text) as Family[]).map((f) => [f.name, f]));
}

const value = (m: Map<string, Family>, name: string, labels: Record<string, string> = {}) =>
  Number(m.get(name)?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v))?.value ?? NaN);

t.test('/metrics: every family, and the numbers follow what happens', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { lines, liveness: { pollIntervalMs: 200, evictAfter: 3, continueAfterMs: 450 }, metricsPort: 0 });
  t.teardown(() => cp.close());
  t.match(cp.metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'served on a free port');
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' });

  const first = await scrape(cp.metricsUrl!);
  for (const [name, m] of Object.entries(METRICS)) t.equal(first.get(name)?.type, m.type.toUpperCase(), `${name} is exported as a ${m.type}`);
  t.equal(value(first, 'kagi_joins_total'), 0, 'no joins yet');

  const a = await joinedAgent(t, cp, 'term-a', 'alice');
  await joinedAgent(t, cp, 'term-b', 'bob');
  const x = agent(await device(cp, 'term-x'), cp.brokerUrl);
  t.teardown(() => x.stop({ leave: false }));
  await x.start();
  await x.configure();
  await t.rejects(x.join('bob', 'not-bobs-password'), /wrong user id or password/, 'a wrong password is refused');
  let muted = false;
  await joinedAgent(t, cp, 'term-c', 'carol', { lose: (dir, topic) => muted && dir === 'out' && topic.includes('/svc/') });
  muted = true;
  for (let i = 0; i < 5; i++) await a.send('plant', 'term-b', enc.encode(`frame ${i}`));
  t.ok(await until(() => logged(lines, /term-c evicted from plant/).length > 0, 4000), 'c is evicted');

  const m = await scrape(cp.metricsUrl!);
  t.equal(value(m, 'kagi_joins_total'), 3, 'three joins');
  t.equal(value(m, 'kagi_refusals_total', { reason: 'password' }), 1, 'one refusal, reason password');
  t.ok(value(m, 'kagi_frames_forwarded_total') >= 5, 'frames forwarded counted');
  t.equal(value(m, 'kagi_evictions_total'), 1, 'one eviction');
  t.ok(await until(async () => value(await scrape(cp.metricsUrl!), 'kagi_rekeys_total', { why: 'a member left' }) >= 1), 'the rekey after the eviction is counted');
  t.ok(value(m, 'kagi_connected_clients') >= 6, `connected clients: 3 services and the agents (${value(m, 'kagi_connected_clients')})`);
  const notFound = await fetch(cp.metricsUrl!.replace('/metrics', '/other'));
  t.equal(notFound.status, 404, 'only /metrics is served');

  // prom-client's default process metrics, and kagi's histograms.
  const last = await scrape(cp.metricsUrl!);
  for (const [name, type] of [['process_cpu_seconds_total', 'COUNTER'], ['process_resident_memory_bytes', 'GAUGE'], ['nodejs_eventloop_lag_seconds', 'GAUGE'], ['nodejs_gc_duration_seconds', 'HISTOGRAM']]) {
    t.equal(last.get(name!)?.type, type, `default metric ${name} (${type})`);
  }
  t.ok(value(last, 'process_cpu_seconds_total') > 0, 'the process has used CPU');
  t.ok(value(last, 'process_resident_memory_bytes') > 10_000_000, 'and has a resident set');
  const hist = (name: string) => last.get(name)?.metrics[0];
  for (const name of Object.keys(HISTOGRAMS)) t.equal(last.get(name)?.type, 'HISTOGRAM', `${name} is a histogram`);
  t.equal(Number(hist('kagi_join_seconds')?.count), 3, 'join latency: one observation per join');
  t.ok(Number(hist('kagi_join_seconds')?.sum) > 0, 'join latency: time was spent');
  t.equal(hist('kagi_join_seconds')?.buckets?.['+Inf'], '3', 'join latency: every join in the +Inf bucket');
  t.ok(Number(hist('kagi_poll_round_seconds')?.count) >= 2, `poll round time: observed per round (${hist('kagi_poll_round_seconds')?.count})`);
  t.ok(await until(async () => Number((await scrape(cp.metricsUrl!)).get('kagi_rekey_seconds')?.metrics[0]?.count) >= 1), 'rekey duration: the rekey after the eviction observed');
});

t.test('kagi device revoke: disconnected, out of its VPN, rekeyed, never admitted again', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const a = await joinedAgent(t, cp, 'term-a', 'alice');
  await joinedAgent(t, cp, 'term-b', 'bob');
  await revokeDevice(cp.store, 'term-b');
  t.ok(await until(() => logged(lines, /broker: disconnecting term-b \(revoked\)/).length > 0), 'the broker drops its connection');
  t.ok(await until(() => a.epochs().plant === 2), 'the VPN is rekeyed for the rest (forward secrecy)');
  t.same((await cp.store.members('plant')).map((m) => m.deviceId), ['term-a'], 'VPN table without it');
  t.same(cp.acl.snapshot(), { plant: ['term-a'] }, 'broker ACL without it');
  t.ok(await until(() => cp.broker!.refusals.some((r) => r.clientId === 'term-b' && /revoked/.test(r.reason)), 8000), 'its reconnect is refused: revoked');
  await t.rejects(revokeDevice(cp.store, 'nobody'), /no device 'nobody'/, 'revoking an unknown device is an error');
});

t.test('kagi status: online and offline, answering polls, when each VPN was keyed', async (t) => {
  const data = tempDir(t);
  const cp = await controlPlane(data);
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const a = await joinedAgent(t, cp, 'term-a', 'alice');
  await joinedAgent(t, cp, 'term-b', 'bob');
  // In-process (kagiIn): a spawnSync here would stall the control plane this test runs while it polls.
  const status = async () => JSON.parse((await kagiIn(['status', '--json', '--data', data])).stdout) as { devices: { id: string; online: boolean | null; since: string | null; communicating: boolean }[]; vpns: { id: string; lastRekey: string | null }[] };
  const dev = async (id: string) => (await status()).devices.find((d) => d.id === id)!;
  t.ok(await until(async () => (await dev('term-a')).online === true), 'a is online (its retained state, recorded by the config server)');
  t.match(await dev('term-a'), { communicating: true, since: /^\d{4}-\d\d-\d\dT/ }, 'answering polls, online since a time');
  t.match((await status()).vpns, [{ id: 'plant', lastRekey: /^\d{4}-\d\d-\d\dT/ }], 'the VPN shows when its key was made');
  await a.stop();
  t.ok(await until(async () => (await dev('term-a')).online === false), 'a stopped: offline');
  t.equal((await dev('term-b')).online, true, 'b still online');
  t.match((await kagiIn(['status', '--data', data])).stdout, /term-a\s+terminal .*offline since \d+s ago/, 'the table says so in words');
});
