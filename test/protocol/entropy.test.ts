/** The random-source checks (protocol/entropy.ts): each bad source a host could hand over is refused, a good one passes. */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { checkedRandom, entropyHealthTest, healthyRandom } from '../../protocol/entropy.js';

const good = (n: number) => new Uint8Array(randomBytes(n));

t.test('every draw must be a Uint8Array of exactly n bytes', async (t) => {
  t.throws(() => checkedRandom((n) => new ArrayBuffer(n))(16), /random source returned ArrayBuffer, not a Uint8Array/, 'an ArrayBuffer');
  t.throws(() => checkedRandom((n) => Array.from({ length: n }, () => 7))(16), /returned Array, not a Uint8Array/, 'a plain array');
  t.throws(() => checkedRandom(() => null)(16), /returned null/, 'null');
  t.throws(() => checkedRandom((n) => good(n - 1))(16), /returned 15 bytes, not the 16 asked for/, 'a short array');
  t.throws(() => checkedRandom(() => new Uint8Array(0))(16), /returned 0 bytes/, 'an empty one');
  t.equal(checkedRandom(good)(16).length, 16, 'a good draw passes through');
});

t.test('the start-up health test', async (t) => {
  t.throws(() => healthyRandom((n) => new Uint8Array(n)), /same byte \d+ times in a row \(repetition count test\)/, 'all zeros');
  const biased = (n: number) => good(n).map((b, i) => (i % 5 === 0 ? b : 0x41));
  t.throws(() => healthyRandom(biased), /adaptive proportion test/, 'a source stuck on one value 4 times in 5');
  const counter = (n: number) => Uint8Array.from({ length: n }, (_, i) => i & 255);
  t.throws(() => healthyRandom(counter), /two draws of 32 bytes were equal/, 'a source that repeats itself on every call');
  let fixed: Uint8Array | undefined;
  t.throws(() => entropyHealthTest((n) => (n === 32 ? (fixed ??= good(32)) : good(n))), /two draws of 32 bytes were equal/, 'the same 32 bytes twice');
  t.doesNotThrow(() => healthyRandom(good), 'the operating system RNG passes');
});
