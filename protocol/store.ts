/**
 * The one storage shape the protocol layer needs: a number per key. Replay
 * guards keep the highest sequence seen per sender in it, send counters the
 * highest sequence reserved per peer and their era. Servers back it with their Store,
 * boards with flash key-value storage, tests with memory.
 */
export interface NumberStore {
  get(key: string): Promise<number | undefined>;
  set(key: string, value: number): Promise<void>;
  /**
   * Set several numbers at once, all or none (one write where the store
   * has such a thing): a send counter's first block and its new era go
   * together, never the era alone (replay.ts).
   */
  setMany?(entries: [string, number][]): Promise<void>;
  /**
   * Atomically add `n` to the number at `key` (absent = 0) and return the
   * sum: send counters shared by several instances reserve with it.
   */
  add?(key: string, n: number): Promise<number>;
  /**
   * Atomically accept `seq` into the replay window at `key` (see
   * replay.ts): true the first time, false if seen or too old. Replay
   * guards shared by several instances check with it. A claim records when
   * the window was last used, `at` (Unix seconds; default now), so windows
   * of eras nobody uses any more can be swept.
   */
  claim?(key: string, seq: number, at?: number): Promise<boolean>;
  /** How far below the highest seq `claim` still accepts a late one (default SEQ_WINDOW). */
  readonly claimWindow?: number;
}

export class MemoryNumberStore implements NumberStore {
  private readonly m = new Map<string, number>();
  async get(key: string): Promise<number | undefined> {
    return this.m.get(key);
  }
  async set(key: string, value: number): Promise<void> {
    this.m.set(key, value);
  }
}
