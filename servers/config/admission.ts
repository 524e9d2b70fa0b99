/**
 * At most `limit` device requests in the config server's front part at
 * once (auth's check, the store's writes, up to the keys going out); the
 * rest wait their turn in arrival order.
 *
 * Why: every step of a join is a turn of the event loop (a store read, a
 * group commit, auth's open), and a burst of arrivals queues ahead of those
 * turns. With nothing in front, a restart storm's 10,000 join requests
 * were each taken one step before any was taken two: kagi up opened every
 * request before it sent the first device its keys, and the devices
 * waited idle while it did, then it waited idle on them (decision 128).
 * With a few at a time, joins finish from the first second on and both
 * sides work at once.
 *
 * The waiting line is bounded: past `maxWaiting` a request is turned away
 * (the caller drops it, and the device's retry is the answer), so a flood
 * cannot queue without limit.
 */
import { availableParallelism } from 'node:os';
import { DEFAULT_MAX_WAITING } from '../auth/hash-pool.js';
import { Deque } from '../../protocol/deque.js';

/**
 * Places where the auth server runs in this process: a password check
 * gives its place back while it waits on the hash pool (ServiceDoor's
 * `aside`), so these are for the work of this process only. 32 kept a
 * storm of 10,000 as depth-first as it could be measured (p50 24 s against
 * 30–31 s with 98 places and 34–39 s with none, decision 128). 20 since a
 * join's steps no longer wait on a sync each (decision 140): each takes
 * its place for less time, and 32 let more joins share the CPU at once
 * (a storm of 10,000's p50 18.8 s against 15.7 and 14.7 s with 20; 12
 * took fewer joins per commit and 27 s for all).
 */
export const ADMITTED_BESIDE_PASSWORDS = 20;

/**
 * The places where the auth server runs in another process: there a
 * password join holds its place through its hash, so the limit leaves room
 * for the pool's places (running and waiting; the defaults, 2 cores here
 * and 64 waiting) besides: a flood of password joins still fills the pool,
 * and those beyond it are refused `busy` with a retry time by the pool, as
 * before, rather than wait here.
 */
export function admittedBeside(pool: { concurrency?: number; maxWaiting?: number } = {}): number {
  return ADMITTED_BESIDE_PASSWORDS + (pool.concurrency ?? availableParallelism()) + (pool.maxWaiting ?? DEFAULT_MAX_WAITING);
}

export class Admission {
  private running = 0;
  /** Up to MAX_WAITING (100,000) long in a storm: a Deque, where Array.shift would copy it at every turn. */
  private readonly waiting = new Deque<() => void>();

  constructor(
    readonly limit: number,
    readonly maxWaiting: number,
  ) {
    if (!(Number.isInteger(limit) && limit >= 1)) throw new RangeError('admission limit must be a whole number ≥ 1');
  }

  /** Requests waiting for a place now. */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * A place, once one is free: the function that gives it back (calling it
   * again does nothing). null when the waiting line is full.
   */
  async enter(): Promise<(() => void) | null> {
    if (this.running >= this.limit) {
      if (this.queued >= this.maxWaiting) return null;
      await new Promise<void>((r) => this.waiting.push(r));
    } else this.running++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.next();
    };
  }

  /** A place was given back: hand it to the longest waiting, or free it. */
  private next(): void {
    const wake = this.waiting.shift();
    if (wake) wake(); // the place passes on: running stays the same
    else this.running--;
  }
}
