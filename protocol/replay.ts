/**
 * Sequence numbers of control messages (DESIGN §4): every (sender, receiver)
 * pair has a strictly increasing sequence. The receiver's ReplayGuard keeps
 * the highest accepted per sender; the sender's SendCounter never hands out
 * a number twice, across restarts too, because it persists a reserved upper
 * bound before using numbers below it (one write per `block` messages).
 */
import { KagiError } from './errors.js';
import { LIMITS } from './limits.js';
import type { NumberStore } from './store.js';

export class ReplayGuard {
  // Serialises check-and-set per guard: two copies of one message racing
  // through an async store must not both pass.
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly store: NumberStore, private readonly prefix = 'rx:') {}

  /**
   * Record `seq` from `sender` if it is newer than anything seen, else throw
   * KagiError('replay'). Call only after the message authenticated, so a
   * forger cannot push the high-water mark up.
   */
  accept(sender: string, seq: number): Promise<void> {
    const run = this.tail.then(async () => {
      const key = this.prefix + sender;
      const highest = await this.store.get(key);
      if (highest !== undefined && seq <= highest) {
        throw new KagiError('replay', `seq ${seq} from ${sender} not above ${highest}`);
      }
      await this.store.set(key, seq);
    });
    this.tail = run.catch(() => undefined);
    return run;
  }
}

export class SendCounter {
  private next = new Map<string, number>();
  private reserved = new Map<string, number>();
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: NumberStore,
    private readonly block = 64,
    private readonly prefix = 'tx:',
  ) {}

  /** The next sequence for messages to `peer` (starts at 1). */
  take(peer: string): Promise<number> {
    const run = this.tail.then(async () => {
      let n = this.next.get(peer);
      let top = this.reserved.get(peer);
      if (n === undefined || top === undefined) {
        // After a restart, skip whatever the last run may have used.
        top = (await this.store.get(this.prefix + peer)) ?? 0;
        n = top + 1;
      }
      if (n > LIMITS.maxSeq) throw new KagiError('exhausted', `sequence to ${peer} exhausted`);
      if (n > top) {
        top = Math.min(n + this.block - 1, LIMITS.maxSeq);
        await this.store.set(this.prefix + peer, top);
      }
      this.next.set(peer, n + 1);
      this.reserved.set(peer, top);
      return n;
    });
    this.tail = run.catch(() => undefined);
    return run;
  }
}
