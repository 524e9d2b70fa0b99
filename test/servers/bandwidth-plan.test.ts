/** The per-VPN send schedule (embodiment 5): the patent's cases, then properties over random tables. */
import t from 'tap';
import { planBandwidth, type PlanInput } from '../../servers/config/bandwidth-plan.js';

const M = 1_000_000;
const vpn = (id: string, priority: number, maxBandwidth: number, members = 1): PlanInput => ({ id, priority, maxBandwidth, members });

t.test('two VPNs, the link below their sum: the higher priority gets its maximum, the lower what is left', async (t) => {
  t.same(planBandwidth([vpn('plant', 5, 20 * M), vpn('office', 1, 20 * M)], 24 * M), [
    { id: 'plant', rate: 20 * M, state: 'full' },
    { id: 'office', rate: 4 * M, state: 'partial' },
  ]);
  t.same(planBandwidth([vpn('plant', 5, 30 * M), vpn('office', 1, 20 * M)], 24 * M).map((a) => [a.rate, a.state]), [[24 * M, 'partial'], [0, 'cut']], 'a link below the top VPN alone: the lower one is cut');
  t.same(planBandwidth([vpn('plant', 5, 10 * M), vpn('office', 1, 10 * M)], 100 * M).map((a) => a.state), ['full', 'full'], 'enough for both: both full');
});

t.test('equal priorities share what is left max-min fairly', async (t) => {
  t.same(planBandwidth([vpn('a', 3, 20 * M), vpn('b', 3, 20 * M)], 30 * M).map((a) => a.rate), [15 * M, 15 * M], 'equal maxima: equal halves');
  t.same(planBandwidth([vpn('a', 3, 5 * M), vpn('b', 3, 40 * M)], 30 * M).map((a) => a.rate), [5 * M, 25 * M], 'what a small VPN cannot use goes to the other');
  t.same(planBandwidth([vpn('a', 3, 0), vpn('b', 3, 10 * M)], 30 * M).map((a) => [a.rate, a.state]), [[20 * M, 'partial'], [10 * M, 'full']], 'no maximum: takes what the level leaves');
});

t.test('a VPN with no members is idle and reserves nothing', async (t) => {
  t.same(planBandwidth([vpn('empty', 9, 50 * M, 0), vpn('plant', 1, 20 * M)], 24 * M), [
    { id: 'empty', rate: 0, state: 'idle' },
    { id: 'plant', rate: 20 * M, state: 'full' },
  ]);
});

t.test('capacity unknown (0): nothing is cut, everyone gets its maximum', async (t) => {
  t.same(planBandwidth([vpn('a', 1, 5 * M), vpn('b', 2, 0)], 0).map((a) => [a.rate, a.state]), [[5 * M, 'full'], [0, 'full']]);
});

/** Small deterministic PRNG (mulberry32), so a failing table can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('properties over 3,000 random tables', async (t) => {
  const r = rng(7);
  const pick = (n: number) => Math.floor(r() * n);
  let failures = 0;
  for (let k = 0; k < 3000 && failures < 5; k++) {
    const table = Array.from({ length: 1 + pick(8) }, (_, i) => vpn(`v${i}`, pick(4), pick(5) === 0 ? 0 : (1 + pick(50)) * 100_000, pick(6) === 0 ? 0 : 1 + pick(3)));
    const capacity = pick(6) === 0 ? 0 : (1 + pick(100)) * 100_000;
    const plan = planBandwidth(table, capacity);
    const byId = new Map(plan.map((a) => [a.id, a]));
    const bad = (what: string) => (failures++, t.fail(`${what}: capacity ${capacity}, table ${JSON.stringify(table)}, plan ${JSON.stringify(plan)}`));
    const total = plan.reduce((s, a) => s + a.rate, 0);
    if (capacity > 0 && total > capacity) bad('exceeds the link');
    for (const v of table) {
      const a = byId.get(v.id)!;
      if (v.maxBandwidth > 0 && a.rate > v.maxBandwidth) bad(`${v.id} above its maximum`);
      if (v.members === 0 && (a.rate !== 0 || a.state !== 'idle')) bad(`${v.id} has no members but is not idle`);
      if (capacity > 0 && v.members > 0 && a.rate === 0 && a.state !== 'cut') bad(`${v.id} has nothing but is not cut`);
      for (const w of table) {
        const b = byId.get(w.id)!;
        // Never cut (or short) a VPN while a lower-priority one keeps bandwidth.
        if (v.members > 0 && w.members > 0 && v.priority > w.priority && b.rate > 0 && a.state !== 'full') bad(`${v.id} short while lower ${w.id} has ${b.rate}`);
        // Equal priority, equal maximum: equal shares (within rounding).
        if (v.members > 0 && w.members > 0 && v.priority === w.priority && v.maxBandwidth === w.maxBandwidth && Math.abs(a.rate - b.rate) > 1) bad(`${v.id} and ${w.id} treated unequally`);
      }
    }
  }
  t.equal(failures, 0, 'no table broke a property');
});
