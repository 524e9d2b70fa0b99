/** Reconnect backoff: full jitter under an exponentially growing cap. */
import t from 'tap';
import { backoffDelay, DEFAULT_BACKOFF } from '../../protocol/backoff.js';

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
