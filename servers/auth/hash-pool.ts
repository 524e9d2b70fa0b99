/**
 * The bounded queue password hashes run on (issue 21): at most
 * `concurrency` scrypt calls at once (each takes a core for ~30 ms) and at
 * most `maxWaiting` waiting for one. A caller reserves a place first; with
 * none left it is refused at once (`busy`, with a retry time) instead of
 * queueing without bound, so a burst of joins costs the auth server
 * bounded memory and bounded latency for those it takes.
 */
import { availableParallelism } from 'node:os';

export interface HashPoolOptions {
  /** scrypt calls at once (default: the cores, availableParallelism()). */
  concurrency?: number;
  /** Calls waiting for a free worker beyond those running (default 64). */
  maxWaiting?: number;
}

export const DEFAULT_MAX_WAITING = 64;

/** A reserved place in the pool: run one job in it, or give it back. */
export interface HashSlot {
  run<T>(job: () => Promise<T>): Promise<T>;
  release(): void;
}

export class HashPool {
  readonly concurrency: number;
  readonly maxWaiting: number;
  private running = 0;
  /** Places reserved and not yet queued, running or released. */
  private reserved = 0;
  private readonly waiting: (() => void)[] = [];
  /** Mean job time (ms), a moving average: what the retry time is made of. */
  private meanMs = 50;

  constructor(o: HashPoolOptions = {}) {
    this.concurrency = Math.max(1, o.concurrency ?? availableParallelism());
    this.maxWaiting = Math.max(0, o.maxWaiting ?? DEFAULT_MAX_WAITING);
  }

  /** A place in the pool, or null when it is full (refuse `busy`). */
  reserve(): HashSlot | null {
    if (this.running + this.waiting.length + this.reserved >= this.concurrency + this.maxWaiting) return null;
    this.reserved++;
    let used = false;
    const take = () => {
      if (used) throw new Error('a hash slot is used once');
      used = true;
      this.reserved--;
    };
    return {
      run: async <T>(job: () => Promise<T>) => {
        take();
        if (this.running >= this.concurrency) await new Promise<void>((r) => this.waiting.push(r));
        else this.running++;
        const started = Date.now();
        try {
          return await job();
        } finally {
          this.meanMs = 0.9 * this.meanMs + 0.1 * (Date.now() - started);
          const next = this.waiting.shift();
          if (next) next(); // the place passes on: running stays the same
          else this.running--;
        }
      },
      release: () => {
        if (!used) take();
      },
    };
  }

  /** When a refused caller may find a place (s, at least 1): the queue's work ahead, spread over the workers. */
  retryAfterSeconds(): number {
    const ahead = this.running + this.reserved + this.waiting.length;
    return Math.max(1, Math.ceil((ahead * this.meanMs) / this.concurrency / 1000));
  }

  /** Running and waiting jobs (metrics, tests). */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length + this.reserved };
  }
}
