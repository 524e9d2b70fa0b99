/**
 * Sliding anti-replay window over frame counters (RFC 4303 §3.4.3, as
 * IPsec and WireGuard keep one per peer).
 *
 * Accepts counter c iff c was never accepted and c > highest - size. The
 * bitmap is a ring of `size` bits indexed by c mod size; moving the top
 * forward clears the bits it passes. Check and commit are separate so a
 * frame is marked only after it authenticated: a forger cannot slide the
 * window. Counters are public, so branching on them leaks nothing.
 */
export const DEFAULT_WINDOW = 2048;

export class ReplayWindow {
  private readonly bits: Uint32Array;
  private top = -1; // highest accepted counter; -1 before the first

  constructor(readonly size: number = DEFAULT_WINDOW) {
    if (!Number.isInteger(size) || size <= 0 || size % 32 !== 0) throw new RangeError('window size must be a positive multiple of 32');
    this.bits = new Uint32Array(size / 32);
  }

  get highest(): number {
    return this.top;
  }

  private bit(c: number): [number, number] {
    const i = c % this.size;
    return [i >>> 5, 1 << (i & 31)];
  }

  /** Would `c` be accepted now? Does not change the window. */
  check(c: number): boolean {
    if (!Number.isSafeInteger(c) || c < 0) return false;
    if (c > this.top) return true;
    if (c <= this.top - this.size) return false;
    const [w, m] = this.bit(c);
    return (this.bits[w]! & m) === 0;
  }

  /** Mark `c` as received; call only after check(c) and authentication. */
  commit(c: number): void {
    if (c > this.top) {
      if (c - this.top >= this.size) this.bits.fill(0);
      else for (let x = this.top + 1; x < c; x++) this.clear(x);
      this.top = c;
    }
    const [w, m] = this.bit(c);
    this.bits[w]! |= m;
  }

  private clear(c: number): void {
    const [w, m] = this.bit(c);
    this.bits[w]! &= ~m;
  }
}
