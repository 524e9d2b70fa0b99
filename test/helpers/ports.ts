/** TCP ports free on 127.0.0.1 right now (for a child that must bind a known port). */
import { createServer, type Server } from 'node:net';

const listen = (port: number): Promise<Server | null> =>
  new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(null));
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
const close = (s: Server): Promise<void> => new Promise((r) => s.close(() => r()));

/** One port, from the same range as freePortRange's: a child restarted on it finds it free again. */
export function freePort(): Promise<number> {
  return freePortRange(1);
}

/**
 * The first of `n` consecutive ports, all free right now. Chosen below the
 * kernel's ephemeral range (32768 and up here), where no other test's
 * `listen(0)` or outgoing connection can take one of them between this check
 * and the child's bind: a relay's ports N..N+3 once lost p4 that way in CI.
 */
export async function freePortRange(n: number): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (12_000 - n));
    const held: Server[] = [];
    for (let i = 0; i < n; i++) {
      const s = await listen(base + i);
      if (!s) break;
      held.push(s);
    }
    await Promise.all(held.map(close));
    if (held.length === n) return base;
  }
  throw new Error(`no ${n} consecutive free ports found between 20000 and 32000`);
}
