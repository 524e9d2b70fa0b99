/**
 * bench/crypto: X25519 and AEAD seal+open on both backends, side by side,
 * with the ratio portable/node (how much slower a board-style pure-JS build
 * is than OpenSSL on the same machine, same run).
 *
 *   npm run bench:crypto
 */
import { portableCrypto } from '../protocol/crypto/portable.js';
import { nodeCrypto } from '../runtime/node/crypto.js';
import type { Crypto } from '../protocol/crypto/backend.js';
import { benchJson, opsPerSecond } from './common.js';

const BUDGET_MS = 700;

/** Ops per second of `op` for about BUDGET_MS, after a warm-up. */
const rate = (op: () => void) => opsPerSecond(op, BUDGET_MS, { warmup: 20, batch: 10 });

function measure(c: Crypto): Map<string, number> {
  const out = new Map<string, number>();
  const a = c.generateKeyPair();
  const b = c.generateKeyPair();
  out.set('X25519 DH ops/s', rate(() => c.dh(a.secretKey, b.publicKey)));
  const key = c.randomBytes(32);
  const nonce = c.randomBytes(12);
  const aad = c.randomBytes(16);
  for (const size of [64, 1024, 16384]) {
    const pt = c.randomBytes(size);
    const r = rate(() => c.open(key, nonce, c.seal(key, nonce, pt, aad), aad));
    out.set(`seal+open ${size} B /s`, r);
    out.set(`seal+open ${size} B MB/s`, (r * size) / 1e6);
  }
  return out;
}

const portable = measure(portableCrypto());
const node = measure(nodeCrypto());
const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(2)).padStart(12);
console.log(`${'operation'.padEnd(26)}${'portable'.padStart(12)}${'node'.padStart(12)}${'portable/node'.padStart(15)}`);
for (const [k, p] of portable) {
  const n = node.get(k)!;
  console.log(`${k.padEnd(26)}${fmt(p)}${fmt(n)}${(p / n).toFixed(3).padStart(15)}`);
}
// No target: the portable backend's speed is reported beside node:crypto's (its floor).
benchJson([...portable].filter(([k]) => !k.endsWith('B /s')).map(([k, p]) => {
  const n = node.get(k)!;
  const [figure, unit] = k.endsWith(' MB/s') ? [k.slice(0, -5), 'MB/s'] : [k.slice(0, -6), 'ops/s'];
  return { figure: `portable ${figure}`, value: p, unit, floor: n, ratio: p / n, target: 'none (reported)', met: true };
}));
