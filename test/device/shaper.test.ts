/** The per-VPN token bucket, on a clock the test controls. */
import t from 'tap';
import { Shaper, MAX_WAIT_MS } from '../../device/shaper.js';

t.test('unlimited and cut', async (t) => {
  const s = new Shaper();
  t.same(s.admit(60_000, 0), { ok: true, waitMs: 0 }, 'no rate: everything goes at once');
  s.set(0, true, 0);
  t.same(s.admit(10, 1), { ok: false, reason: 'cut' }, 'a cut VPN sends nothing');
  s.set(0, false, 2);
  t.same(s.admit(10, 3), { ok: true, waitMs: 0 }, 'restored');
});

t.test('a rate: a burst, then frames spaced at the rate; too long a wait drops', async (t) => {
  const s = new Shaper();
  s.set(80_000, false, 0); // 10 kB/s, burst 1,500 bytes (one MTU)
  t.same(s.admit(1_500, 0), { ok: true, waitMs: 0 }, 'the burst covers the first frame');
  t.same(s.admit(1_000, 0), { ok: true, waitMs: 100 }, 'the next 1,000 bytes wait 100 ms');
  t.same(s.admit(1_000, 0), { ok: true, waitMs: 200 }, 'and the one after 200 ms: queued behind it');
  t.same(s.admit(1_000, 300), { ok: true, waitMs: 0 }, 'after 300 ms the debt is paid');
  let sent = 0;
  for (let now = 300; now < 10_300; now += 10) if (s.admit(100, now).ok) sent += 100;
  t.ok(Math.abs(sent - 100_000) <= 1_600, `over 10 s at 10 kB/s: ${sent} bytes admitted (~100,000)`);
  const big = new Shaper();
  big.set(8_000, false, 0); // 1 kB/s
  t.same(big.admit(1_500, 0), { ok: true, waitMs: 0 }, 'burst');
  t.same(big.admit(5_000, 0), { ok: false, reason: 'rate' }, `a frame that would wait more than ${MAX_WAIT_MS} ms is dropped`);
  t.same(big.admit(500, 0), { ok: true, waitMs: 500 }, 'a smaller one still fits');
});
