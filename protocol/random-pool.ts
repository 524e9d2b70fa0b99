/**
 * Public random values drawn in blocks. A call into the random source costs
 * about 10 µs whatever its size, and a party draws a request id for every
 * message and an era for every new peer: one call each was 1.7% and 3.4% of
 * a rekey of 10,000 (bench/rekey, decision 111). For public values only
 * (request ids and eras travel in envelopes): secrets are drawn where they
 * are used. Each byte is handed out once and zeroed in the pool.
 */
export class RandomPool {
  private bytes: Uint8Array = new Uint8Array(0);
  private at = 0;

  constructor(
    private readonly random: (n: number) => Uint8Array,
    private readonly block = 256,
  ) {}

  /** `n` fresh random bytes (a copy; n at most the block size). */
  take(n: number): Uint8Array {
    if (n > this.block) return this.random(n);
    if (this.at + n > this.bytes.length) (this.bytes = this.random(this.block)), (this.at = 0);
    const b = this.bytes.subarray(this.at, (this.at += n));
    const out = b.slice();
    b.fill(0);
    return out;
  }

  /** A random unsigned 32-bit integer. */
  uint32(): number {
    const b = this.take(4);
    return ((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]!;
  }
}
