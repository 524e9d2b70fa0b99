/**
 * servers/auth/history.ts: the auth server's record for kagi why, on a real
 * SQLite store with a clock of the test's own: each verdict's row, and a
 * flood of one refusal written once a second at most.
 */
import t from 'tap';
import { kagiDataDir } from '../helpers/control-plane.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { AuthHistory, REPEAT_MS } from '../../servers/auth/history.js';

t.test('verdicts recorded, repeats of one refusal coalesced', async (t) => {
  const s = new SqliteStore(kagiDataDir(t));
  t.teardown(() => s.close());
  let now = 1_000_000;
  const lines: string[] = [];
  const h = new AuthHistory({ store: s, log: (_l, m) => lines.push(m) }, () => now);
  const refuse = (code: string, reason = `${code} reason`) => h.note({ device: 'd1', user: 'alice' }, 'join', { ok: false, code, reason });

  await refuse('throttled', 'first');
  t.same((await s.deviceHistory('d1')).refusal, { at: now, code: 'throttled', reason: 'first', user: 'alice' }, 'a refusal is recorded with its user');
  now += REPEAT_MS - 1;
  await refuse('throttled', 'second');
  t.equal((await s.deviceHistory('d1')).refusal?.reason, 'first', 'the same refusal again within REPEAT_MS is not written');
  await refuse('busy');
  t.equal((await s.deviceHistory('d1')).refusal?.code, 'busy', 'another code is written at once');
  now += REPEAT_MS;
  await refuse('busy', 'later');
  t.equal((await s.deviceHistory('d1')).refusal?.reason, 'later', 'the same code after REPEAT_MS is written');

  now += 1;
  await h.note({ device: 'd1', user: 'alice' }, 'join', { ok: true });
  t.same((await s.deviceHistory('d1')).auth, { at: now, op: 'join', user: 'alice' }, 'an accepted join is recorded, with its user');
  await refuse('busy', 'after success');
  t.equal((await s.deviceHistory('d1')).refusal?.reason, 'after success', 'after a success the same code is written again at once');
  await h.note({ device: 'd2' }, 'config', { ok: true });
  t.same((await s.deviceHistory('d2')).auth, { at: now, op: 'config', user: null }, 'a config request: no user');
  await h.note({}, 'join', { ok: false, code: 'malformed', reason: 'x' });
  t.same(lines, [], 'nothing to record without a device, and nothing logged');

  await s.close();
  await refuse('password');
  t.match(lines, [/auth: recording join of d1 for kagi why: /], 'a store that fails is logged, not thrown');
});
