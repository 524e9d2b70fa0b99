/**
 * The password check end to end (issue 21), on the embedded broker with
 * real agents: an unknown user and a wrong password answer the same;
 * failed attempts are throttled per device and per user (an honest device
 * joining another user goes through meanwhile) and reset by a success;
 * a full hash queue refuses `busy`, and every agent refused gets in after
 * waiting, by itself. Timings are logged, never asserted.
 */
import t from 'tap';
import { agent, controlPlane, device, tempDir, testPlatform, vpnWithUsers } from '../helpers/control-plane.js';
import { TerminalAgent } from '../../device/terminal.js';
import { deadline } from '../helpers/deadline.js';
import { startRelay, plain } from '../helpers/relay.js';
import type { ComeBackLater } from '../../device/session.js';

t.test('unknown user and wrong password: the same answer', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const a = agent(await device(cp, 'term-p'), cp.brokerUrl);
  t.teardown(() => a.stop());
  await a.start();
  await a.configure();
  const refusal = async (user: string) => {
    const started = performance.now();
    const e = (await a.join(user, 'a-guess').then(() => undefined, (x: unknown) => x)) as { name?: string; code?: string; message?: string };
    return { answer: { name: e?.name, code: e?.code, message: e?.message }, ms: performance.now() - started };
  };
  const wrong = await refusal('alice');
  const unknown = await refusal('nobody');
  t.same(wrong.answer, { name: 'RefusedError', code: 'password', message: 'wrong user id or password' }, 'a wrong password is refused with code password');
  t.same(unknown.answer, wrong.answer, 'an unknown user: the very same code and reason');
  t.comment(`one join each, round trip: wrong password ${wrong.ms.toFixed(1)} ms, unknown user ${unknown.ms.toFixed(1)} ms (bench:onboarding measures the means)`);
  t.ok(lines.some((l) => /refused user\.join: wrong user id or password \(unknown user nobody from term-p\)/.test(l)), "the operator's log says which");
  t.ok(lines.some((l) => /refused user\.join: wrong user id or password \(wrong password for alice from term-p\)/.test(l)), 'both ways');
  t.equal(cp.metrics.value('kagi_password_checks_total', { result: 'unknown-user' }), 1, 'the unknown user was hashed (against the dummy)');
  t.equal(cp.metrics.value('kagi_password_checks_total', { result: 'wrong-password' }), 1, 'as the wrong password was');
  t.equal(cp.metrics.value('kagi_refusals_total', { reason: 'password' }), 2, 'two password refusals');
});

t.test('failed attempts are throttled per device and user; an honest device is not', async (t) => {
  // Short waits for a test, long enough that the joins below start inside the first.
  const baseMs = deadline(1000);
  const cp = await controlPlane(tempDir(t), { password: { throttle: { free: 3, baseMs, capMs: 2 * baseMs } } });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const waits: ComeBackLater[] = [];
  const otherWaits: ComeBackLater[] = [];
  // The guesser's own log: it says why it waits, once per wait.
  const said: string[] = [];
  const guesser = new TerminalAgent(await device(cp, 'term-x'), { ...testPlatform(cp.brokerUrl), log: (_l, m) => said.push(m) }, { timeoutMs: deadline(3000), attempts: 2, onWait: (w) => waits.push(w) });
  const honest = agent(await device(cp, 'term-h'), cp.brokerUrl);
  const other = agent(await device(cp, 'term-o'), cp.brokerUrl, { onWait: (w) => otherWaits.push(w) });
  for (const a of [guesser, honest, other]) {
    t.teardown(() => a.stop());
    await a.start();
    await a.configure();
  }
  for (let i = 1; i <= 3; i++) await t.rejects(guesser.join('alice', `guess-${i}`), { code: 'password' }, `wrong password ${i}: free`);
  t.equal(waits.length, 0, 'three failures cost no wait');

  // The fourth guess at once: throttled before any hash; the agent waits
  // the retry time by itself and asks again, and that guess is wrong too.
  const hashedBefore = cp.metrics.value('kagi_password_checks_total', { result: 'wrong-password' });
  const refused = t.rejects(guesser.join('alice', 'guess-4'), { code: 'password' }, 'after waiting, the fourth guess is checked (and wrong)');
  // Failures against alice throttle alice from any device...
  const viaOther = other.join('alice', 'alice-password');
  // ...but an honest device joins another user meanwhile.
  t.same((await honest.join('bob', 'bob-password')).map((v) => v.id), ['plant'], 'an honest device joins bob meanwhile');
  await refused;
  t.match(waits, [{ type: 'join.request', code: 'throttled', reason: 'too many failed password attempts: try again later' }], 'the guesser was told throttled, once');
  t.ok(waits[0]!.retryAfter >= 1, `with a retry time (${waits[0]?.retryAfter} s)`);
  t.match(said.filter((m) => /refused for now/.test(m)), [/^term-x: join\.request refused for now \(throttled: too many failed password attempts: try again later\); asking again in \d+ s$/], 'and said so in one line');
  t.equal(cp.metrics.value('kagi_password_checks_total', { result: 'wrong-password' }), hashedBefore + 1, 'the throttled attempt cost no hash; the one after the wait did');
  t.ok(cp.metrics.value('kagi_password_throttled_total') >= 1, 'counted as throttled');
  t.ok(cp.metrics.value('kagi_refusals_total', { reason: 'throttled' }) >= 1, 'and as a refusal');

  // term-o asked for alice with her password while alice was throttled: it
  // waited too (told so), and got in once the wait was over.
  t.same((await viaOther).map((v) => v.id), ['plant'], 'the right password gets in after the wait');
  t.ok(otherWaits.length >= 1 && otherWaits.every((w) => w.code === 'throttled'), 'another device was throttled for the same user');
  t.equal(await cp.store.passwordFailures('device:term-o'), undefined, 'the success left no count for term-o');

  // The guesser, after its own wait, joins with the right password: its count resets too.
  t.same((await guesser.join('alice', 'alice-password')).map((v) => v.id), ['plant'], 'the guesser joins with the right password after its wait');
  t.equal(await cp.store.passwordFailures('device:term-x'), undefined, 'and its count is reset');
  t.equal(await cp.store.passwordFailures('user:alice'), undefined, "and alice's");
  t.equal(guesser.state, 'joined', 'no agent gave up');
});

// With one admission place at the config server too (decision 128): a
// password check gives its place back while it waits on the pool, so the
// flood still reaches the pool and meets its bound, rather than wait in line.
for (const admitted of [undefined, 1]) t.test(`a full hash queue refuses busy, and every agent gets in after waiting${admitted ? ` (${admitted} admission place)` : ''}`, async (t) => {
  const cp = await controlPlane(tempDir(t), { ...(admitted ? { admitted } : {}), password: { concurrency: 1, maxWaiting: 1, throttle: { free: 3, baseMs: deadline(60_000), capMs: deadline(60_000) } } });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const waits: ComeBackLater[] = [];
  const agents = [];
  for (let i = 0; i < 10; i++) {
    const a = agent(await device(cp, `term-${i}`), cp.brokerUrl, { onWait: (w) => waits.push(w), timeoutMs: deadline(5000) });
    t.teardown(() => a.stop());
    await a.start();
    await a.configure();
    agents.push(a);
  }
  const joined = await Promise.all(agents.map((a) => a.join('alice', 'alice-password')));
  t.ok(joined.every((v) => v[0]?.id === 'plant'), 'all ten joined');
  t.ok(agents.every((a) => a.state === 'joined'), 'no agent gave up or stopped');
  const busy = waits.filter((w) => w.code === 'busy');
  t.ok(busy.length > 0, `some were refused busy (${busy.length} waits)`);
  t.ok(busy.every((w) => w.retryAfter >= 1), 'each with a retry time');
  t.equal(waits.filter((w) => w.code === 'throttled').length, 0, 'ten honest devices of one user joining at once are never throttled');
  t.equal(cp.metrics.value('kagi_password_busy_total'), busy.length, 'each counted');
  t.equal(cp.metrics.value('kagi_refusals_total', { reason: 'busy' }), busy.length, 'and as refusals');
  t.equal(cp.metrics.value('kagi_password_checks_total', { result: 'ok' }), 10, 'ten hashes, one per join: busy cost none');
});

t.test('a relay port joining for a plaintext terminal waits out a throttle, and tells the terminal', async (t) => {
  const baseMs = deadline(1000);
  const cp = await controlPlane(tempDir(t), { password: { throttle: { free: 1, baseMs, capMs: baseMs } } });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const { bound } = await startRelay(t, cp, 'relay-1');
  const term = await plain(t, cp, 'plc-1', 'relay-1', 'p1', bound.p1!);
  await term.p.configure();
  await t.rejects(term.p.join('alice', 'a-guess'), /refused: wrong user id or password/, 'a wrong password: refused, free');
  const vpns = await term.p.join('alice', 'alice-password');
  t.same(vpns.map((v) => v.id), ['plant'], 'the right password gets in after the wait');
  t.equal(term.waiting.length, 1, 'the terminal was told once that the relay waits');
  t.match(term.waiting[0], /^\d+: too many failed password attempts/, 'with the time and why');
});
