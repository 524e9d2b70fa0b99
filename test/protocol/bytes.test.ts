/**
 * protocol/bytes.ts toHex and fromHex: every byte value, lengths across
 * toHex's chunk boundary, against Node's own hex encoding.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fromHex, toHex } from '../../protocol/bytes.js';

t.test('toHex is lower-case hex, as Buffer writes it, for every byte value', async (t) => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  t.equal(toHex(all), Buffer.from(all).toString('hex'));
  t.equal(toHex(new Uint8Array(0)), '', 'empty');
});

t.test('toHex across its chunk boundary, and fromHex back', async (t) => {
  for (const n of [1, 31, 32, 4095, 4096, 4097, 10_000]) {
    const b = new Uint8Array(randomBytes(n));
    const h = toHex(b);
    t.equal(h, Buffer.from(b).toString('hex'), `${n} bytes`);
    t.same(fromHex(h), b, `${n} bytes back`);
  }
});
