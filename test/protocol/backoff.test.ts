/** Reconnect backoff: full jitter under an exponentially growing cap. */
import t from 'tap';
import { backoffDelay, DEFAULT_BACKOFF, retryAfterDelay } from '../../protocol/backoff.js';

t.test('delays stay within [min, cap] and the cap doubles up to the maximum', async (t) => {
  const o = { baseMs: 100, maxMs: 3000, minMs: 20 };
  const caps = [100, 200, 400, 800, 1600, 3000, 3000];
  caps.forEach((cap, attempt) => {
    t.equal(backoffDelay(attempt, 0.999999, o), Math.floor(0.999999 * cap), `attempt ${attempt}: the top of the range is the cap (${cap} ms)`);
    t.equal(backoffDelay(attempt, 0, o), 20, `attempt ${attempt}: never sooner than min`);
  });
  t.equal(backoffDelay(1000, 0.5, o), 1500, 'huge attempt counts do not overflow');
  t.equal(backoffDelay(2, 0.5, o), 200, 'jitter: a uniform draw below the cap');
  t.ok(DEFAULT_BACKOFF.minMs > 0 && DEFAULT_BACKOFF.maxMs >= DEFAULT_BACKOFF.baseMs, 'defaults are sane');
});

t.test('a retry time is waited in full, plus jitter of up to as long again (at most 30 s)', async (t) => {
  t.equal(retryAfterDelay(2, 0), 2000, 'never sooner than told');
  t.equal(retryAfterDelay(2, 0.999999), 2000 + Math.floor(0.999999 * 2000), 'at most twice as long');
  t.equal(retryAfterDelay(900, 0.999999), 900_000 + Math.floor(0.999999 * 30_000), 'a 15-minute wait gets at most 30 s more');
  t.equal(retryAfterDelay(0, 0), 1000, 'a retry time below a second is a second');
  t.equal(retryAfterDelay(1, 0.5), 1500, 'a uniform draw');
});
