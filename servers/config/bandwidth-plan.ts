/**
 * The per-VPN send schedule (patent Fig. 6, embodiment 5): from the VPN
 * management table and a link's capacity, how much each VPN may send.
 *
 * The rules, in order:
 *  1. A VPN with no members is idle: it gets nothing and takes nothing.
 *  2. Higher priority is served first (a larger number is more important).
 *     A priority level is served completely, every VPN up to its maximum,
 *     before a lower level gets anything.
 *  3. When a level does not fit in what is left, its VPNs share what is
 *     left max-min fairly (water-filling: equal shares, a VPN never above
 *     its maximum, what one cannot use goes to the others), and every
 *     lower level is cut (rate 0).
 *  4. Maximum 0 means "no maximum": such a VPN takes what its level leaves.
 *  5. Capacity 0 means "unknown": nothing is cut, every VPN gets its
 *     maximum (0 = unlimited).
 * So a VPN is never cut while a lower-priority one keeps bandwidth, the
 * plan never exceeds the link, and no VPN gets more than its maximum.
 */
export interface PlanInput {
  id: string;
  priority: number;
  /** bits/s; 0 = no maximum */
  maxBandwidth: number;
  members: number;
}

export type AllocationState = 'full' | 'partial' | 'cut' | 'idle';

export interface Allocation {
  id: string;
  /** bits/s it may send; 0 with state 'full' and no maximum = unlimited (capacity unknown) */
  rate: number;
  state: AllocationState;
}

export function planBandwidth(vpns: PlanInput[], capacity: number): Allocation[] {
  const out = new Map<string, Allocation>();
  const active = vpns.filter((v) => v.members > 0);
  for (const v of vpns) if (v.members <= 0) out.set(v.id, { id: v.id, rate: 0, state: 'idle' });
  if (!(capacity > 0)) {
    for (const v of active) out.set(v.id, { id: v.id, rate: v.maxBandwidth, state: 'full' });
    return vpns.map((v) => out.get(v.id)!);
  }
  const levels = [...new Set(active.map((v) => v.priority))].sort((a, b) => b - a);
  let left = capacity;
  for (const p of levels) {
    const level = active.filter((v) => v.priority === p);
    for (const [id, rate] of waterFill(level, left)) {
      const v = level.find((x) => x.id === id)!;
      const state: AllocationState = rate <= 0 ? 'cut' : v.maxBandwidth > 0 && rate >= v.maxBandwidth ? 'full' : 'partial';
      out.set(id, { id, rate, state });
      left -= rate;
    }
    left = Math.max(0, left);
  }
  return vpns.map((v) => out.get(v.id)!);
}

/** Max-min fair shares of `budget` among VPNs capped at their maximum (0 = no cap), in whole bits/s. */
function waterFill(level: PlanInput[], budget: number): Map<string, number> {
  const cap = (v: PlanInput) => (v.maxBandwidth > 0 ? v.maxBandwidth : Infinity);
  // Smallest caps first: each takes its cap if that is below an equal share of what is left.
  const order = [...level].sort((a, b) => cap(a) - cap(b) || (a.id < b.id ? -1 : 1));
  const rates = new Map<string, number>();
  let left = Math.max(0, Math.floor(budget));
  order.forEach((v, i) => {
    const share = Math.floor(left / (order.length - i));
    const rate = Math.min(cap(v), share);
    rates.set(v.id, rate);
    left -= rate;
  });
  return rates;
}
