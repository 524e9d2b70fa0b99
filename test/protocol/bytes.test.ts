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

t.test('fromHex: every pair of characters, as Buffer reads hex, and nothing else', async (t) => {
  const hex = '0123456789abcdefABCDEF';
  let wrong = 0;
  for (let c = 0; c < 0x3000; c++) {
    const ch = String.fromCharCode(c);
    const good = hex.includes(ch);
    // Buffer stops at the first non-hex pair; fromHex refuses the whole input.
    let got: Uint8Array | 'refused';
    try {
      got = fromHex(`a${ch}`);
    } catch (e) {
      got = (e as Error).name === 'TypeError' ? 'refused' : new Uint8Array(0);
    }
    if (good ? !(got instanceof Uint8Array && got[0] === Buffer.from(`a${ch}`, 'hex')[0]) : got !== 'refused') wrong++;
    if (good ? !(fromHex(`${ch}0`)[0] === Buffer.from(`${ch}0`, 'hex')[0]) : !threw(() => fromHex(`${ch}0`))) wrong++;
  }
  t.equal(wrong, 0, 'each of the first 12,288 char codes, high and low nibble: hex reads as Buffer reads it, the rest is refused');
  t.same(fromHex('00ff10Aa'), Uint8Array.of(0, 255, 16, 170), 'mixed case');
  t.ok(threw(() => fromHex('abc')), 'an odd length is refused');
  t.ok(threw(() => fromHex('0g')), 'one bad character refuses the whole input');
  t.same(fromHex(''), new Uint8Array(0), 'empty');
});

function threw(f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch (e) {
    return (e as Error).name === 'TypeError';
  }
}
