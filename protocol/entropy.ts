/**
 * The random source as a host hands it over, checked. A board's RNG is
 * outside our control: a bridge that returns an ArrayBuffer, a short array
 * or zeros would otherwise leave a zeroed buffer behind, and then every HPKE
 * ephemeral key, every boot salt and every request id repeats (the same key
 * and nonce for every request: a password falls out of two of them).
 *
 * - Every draw must be a Uint8Array of exactly the bytes asked for.
 * - At start, a health test in the spirit of NIST SP 800-90B §4.4 on a
 *   sample that is drawn only for the test and then thrown away: the
 *   repetition count test and the adaptive proportion test with cutoffs for
 *   a conservative 1 bit of min-entropy per byte (false alarm 2^-20), and
 *   two draws that must differ. A source that fails is refused: the agent
 *   does not start.
 *
 * The test branches on the sample's bytes, which are never used as keys.
 */
import { KagiError } from './errors.js';

/** Repetition count test cutoff: C = 1 + ⌈20 / H⌉ with H = 1 bit per byte (SP 800-90B §4.4.1). */
const RCT_CUTOFF = 21;
/** Adaptive proportion test: window 512 (non-binary), cutoff for H = 1 (SP 800-90B §4.4.2, Table 2). */
const APT_WINDOW = 512;
const APT_CUTOFF = 410;

export type RandomSource = (n: number) => unknown;

/** Wrap a host's source: anything but a Uint8Array of exactly n bytes is an error, never zeros. */
export function checkedRandom(source: RandomSource): (n: number) => Uint8Array {
  return (n) => {
    const r = source(n);
    if (!(r instanceof Uint8Array)) throw new KagiError('key', `random source returned ${r === null ? 'null' : typeof r === 'object' ? (r as object).constructor?.name ?? 'an object' : typeof r}, not a Uint8Array`);
    if (r.length !== n) throw new KagiError('key', `random source returned ${r.length} bytes, not the ${n} asked for`);
    return r;
  };
}

/** The start-up health test; throws a KagiError('key') naming what failed. */
export function entropyHealthTest(random: (n: number) => Uint8Array): void {
  const sample = random(APT_WINDOW * 2);
  let run = 1;
  for (let i = 1; i < sample.length; i++) {
    run = sample[i] === sample[i - 1] ? run + 1 : 1;
    if (run >= RCT_CUTOFF) throw new KagiError('key', `random source failed its start-up test: the same byte ${run} times in a row (repetition count test)`);
  }
  for (let w = 0; w < sample.length; w += APT_WINDOW) {
    let same = 0;
    for (let i = w; i < w + APT_WINDOW; i++) if (sample[i] === sample[w]) same++;
    if (same >= APT_CUTOFF) throw new KagiError('key', `random source failed its start-up test: one byte value ${same} times in ${APT_WINDOW} (adaptive proportion test)`);
  }
  const a = random(32);
  const b = random(32);
  let differ = 0;
  for (let i = 0; i < 32; i++) differ |= a[i]! ^ b[i]!;
  if (differ === 0) throw new KagiError('key', 'random source failed its start-up test: two draws of 32 bytes were equal');
}

/** A checked source that has passed the health test. */
export function healthyRandom(source: RandomSource): (n: number) => Uint8Array {
  const random = checkedRandom(source);
  entropyHealthTest(random);
  return random;
}
