/**
 * Board runtimes (QuickJS, XS) have no timers of their own: the agent's
 * setTimeout/setInterval come from the host bridge. Installed once, before
 * the agent starts; where the runtime has timers (Node) nothing changes.
 */
import type { HostBridge } from './host.js';

type Timers = {
  setTimeout(fn: () => void, ms?: number): unknown;
  clearTimeout(id: unknown): void;
  setInterval(fn: () => void, ms?: number): unknown;
  clearInterval(id: unknown): void;
};

export function installTimers(host: HostBridge): void {
  const g = globalThis as unknown as Partial<Timers>;
  if (typeof g.setTimeout === 'function') return;
  // Interval ids map to the host timer of their next run.
  const intervals = new Map<number, number>();
  let nextInterval = 1;
  g.setTimeout = (fn, ms = 0) => host.setTimer(Math.max(0, ms), fn);
  g.clearTimeout = (id) => typeof id === 'number' && host.clearTimer(id);
  g.setInterval = (fn, ms = 0) => {
    const id = nextInterval++;
    const arm = () => intervals.set(id, host.setTimer(Math.max(1, ms), () => (intervals.has(id) ? (arm(), fn()) : undefined)));
    arm();
    return id;
  };
  g.clearInterval = (id) => {
    const t = typeof id === 'number' ? intervals.get(id) : undefined;
    if (t !== undefined) host.clearTimer(t);
    if (typeof id === 'number') intervals.delete(id);
  };
}
