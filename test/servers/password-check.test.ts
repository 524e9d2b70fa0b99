/**
 * The password check's parts on a real SQLite store: the hash pool's bound
 * (busy beyond it, never an unbounded queue), the throttle's backoff
 * (free failures, doubling, cap, reset on success) and the check's order
 * (a throttled or busy attempt costs no hash; an unknown user costs one).
 */
import t from 'tap';
import { HashPool } from '../../servers/auth/hash-pool.js';
import { delayAfter, DEFAULT_THROTTLE } from '../../servers/auth/throttle.js';
import { PasswordCheck } from '../../servers/auth/password-check.js';
import { hashPassword } from '../../servers/auth/password.js';
import { Metrics } from '../../servers/metrics.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { PgStore } from '../../servers/store/postgres.js';
import { tempDir } from '../helpers/control-plane.js';
import { postgresMissing, postgresSchema } from '../helpers/postgres.js';

t.test('backoff: free failures, then doubling from the base to the cap', async (t) => {
  const p = DEFAULT_THROTTLE;
  t.same([0, 1, 2, 3, 4, 5].map((f) => delayAfter(p, f)), [0, 0, 0, 1_000, 2_000, 4_000], 'three free, then 1 s doubling');
  t.equal(delayAfter(p, 13), 15 * 60_000, 'capped at 15 min');
  t.equal(delayAfter(p, 10_000), 15 * 60_000, 'and stays there, however many');
});

t.test('the pool runs `concurrency` jobs, queues `maxWaiting`, refuses the rest', async (t) => {
  const pool = new HashPool({ concurrency: 2, maxWaiting: 1 });
  const gates: (() => void)[] = [];
  let running = 0;
  let most = 0;
  const job = () => new Promise<number>((resolve) => {
    running++;
    most = Math.max(most, running);
    gates.push(() => (running--, resolve(1)));
  });
  const slots = [pool.reserve(), pool.reserve(), pool.reserve()];
  t.ok(slots.every((s) => s !== null), 'three places: two workers and one waiting');
  t.equal(pool.reserve(), null, 'the fourth is refused (busy)');
  t.ok(pool.retryAfterSeconds() >= 1, 'with a retry time of at least a second');
  const runs = slots.map((s) => s!.run(job));
  await new Promise((r) => setImmediate(r));
  t.equal(running, 2, 'two run at once');
  gates.shift()!();
  await new Promise((r) => setImmediate(r));
  const freed = pool.reserve();
  t.not(freed, null, 'a finished job frees a place');
  freed!.release();
  while (gates.length) gates.shift()!();
  t.same(await Promise.all(runs), [1, 1, 1], 'every queued job ran');
  t.equal(most, 2, 'never more than two at once');
  t.same(pool.load, { running: 0, waiting: 0 }, 'all places back: nothing leaks');
  await t.rejects(slots[0]!.run(job), /used once/, 'a place runs one job');
});

t.test('the check: throttled and busy cost no hash; success resets', async (t) => {
  const store = new SqliteStore(tempDir(t));
  t.teardown(() => store.close());
  const metrics = new Metrics();
  const check = await PasswordCheck.start(store, metrics, { concurrency: 1, maxWaiting: 0, throttle: { free: 2, baseMs: 60_000, capMs: 120_000 } });
  const alice = { id: 'alice', passwordHash: await hashPassword('alice-password') };
  const hashed = () => ['ok', 'wrong-password', 'unknown-user'].reduce((n, result) => n + metrics.value('kagi_password_checks_total', { result }), 0);

  t.match(await check.check(alice, 'alice', 'd1', 'guess-1'), { ok: false, code: 'password', detail: 'wrong-password' });
  t.match(await check.check(undefined, 'nobody', 'd1', 'guess-2'), { ok: false, code: 'password', detail: 'unknown-user' }, 'an unknown user: the same code');
  t.equal(hashed(), 2, 'both cost a hash (the unknown one against the dummy)');
  const throttled = await check.check(alice, 'alice', 'd1', 'alice-password');
  t.match(throttled, { ok: false, code: 'throttled' }, 'the device has used its two free failures');
  t.ok(!throttled.ok && throttled.code === 'throttled' && throttled.retryAfter >= 59 && throttled.retryAfter <= 60, 'retry after the base wait (s)');
  t.match(await check.check(alice, 'alice', 'd4', 'guess-3'), { ok: false, code: 'password' }, "alice's second failure, from another device");
  t.match(await check.check(alice, 'alice', 'd5', 'alice-password'), { ok: false, code: 'throttled' }, 'failures against one user from many devices throttle that user');
  t.equal(hashed(), 3, 'no hash for throttled attempts');
  t.equal(metrics.value('kagi_password_throttled_total'), 2, 'counted');

  const bob = { id: 'bob', passwordHash: await hashPassword('bob-password') };
  const passed = await check.check(bob, 'bob', 'd3', 'bob-password');
  t.match(passed, { ok: true }, 'another user from another device is not affected');
  t.match(await store.passwordFailures('device:d3'), { failures: 1 }, "the device's attempt is on record until its reset commits");
  // The reset comes back under way, for the caller to commit with its next writes.
  if (passed.ok) await passed.cleared;
  t.equal(await store.passwordFailures('device:d3'), undefined, 'a success leaves nothing on record once its reset is awaited');

  const slot = check.pool.reserve()!; // the only place, held
  t.match(await check.check(bob, 'bob', 'd3', 'bob-password'), { ok: false, code: 'busy' }, 'no place on the pool: busy');
  slot.release();
  t.equal(metrics.value('kagi_password_busy_total'), 1, 'counted');
  t.equal(await store.passwordFailures('device:d3'), undefined, 'a busy attempt claims nothing');
});

const noPostgres = await postgresMissing();

t.test('two auth instances on one PostgreSQL store share the counts', { skip: noPostgres ?? false }, async (t) => {
  const url = postgresSchema(t);
  const [sa, sb] = [await PgStore.open(url), await PgStore.open(url)];
  t.teardown(async () => {
    await sa.close();
    await sb.close();
  });
  const throttle = { free: 2, baseMs: 60_000, capMs: 60_000 };
  const a = await PasswordCheck.start(sa, new Metrics(), { throttle });
  const b = await PasswordCheck.start(sb, new Metrics(), { throttle });
  const alice = { id: 'alice', passwordHash: await hashPassword('alice-password') };
  // A guesser whose joins the broker spreads over both instances, all at once.
  const answers = await Promise.all([a, b, a, b, a, b].map((c, i) => c.check(alice, 'alice', 'x', `guess-${i}`)));
  t.equal(answers.filter((v) => !v.ok && v.code === 'password').length, 2, 'two guesses hashed in all, as on one instance');
  t.equal(answers.filter((v) => !v.ok && v.code === 'throttled').length, 4, 'the rest throttled, on either instance');
  t.match(await a.check(alice, 'alice', 'honest', 'alice-password'), { ok: false, code: 'throttled' }, 'alice is throttled for every device');
  const bob = { id: 'bob', passwordHash: await hashPassword('bob-password') };
  t.match(await b.check(bob, 'bob', 'honest', 'bob-password'), { ok: true }, 'another user from another device is not');
});
