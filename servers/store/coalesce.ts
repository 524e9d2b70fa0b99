/**
 * Many single-key calls, one statement: calls made in the same turn of the
 * event loop are sent as one query over all their keys (`= ANY($1)`, or an
 * upsert over `unnest(…)`), and each caller gets its own row back. The
 * config server's poll round and the replies to it are thousands of such
 * calls (a channel key, a seq to reserve, a seq to claim per message); on
 * PostgreSQL each query is a round trip and a parse, so 10,000 members
 * would cost 2,000 queries a second at the default interval.
 *
 * A statement holds each key once (an upsert cannot touch one row twice in
 * a statement), in key order: statements from several processes then lock
 * rows in one order and cannot deadlock. A repeated key goes in the next
 * statement; two claims of one seq may then race on two connections, which
 * the row lock settles: one wins.
 */

interface Call<A, R> {
  key: string;
  arg: A;
  resolve(r: R): void;
  reject(e: unknown): void;
}

export class Coalescer<A, R> {
  private queue: Call<A, R>[] = [];
  private scheduled = false;

  /**
   * `run` gets distinct keys, sorted, and returns what it found by key; a key it
   * does not return resolves to `miss()` (a fresh value per caller).
   */
  constructor(
    private readonly run: (batch: { key: string; arg: A }[]) => Promise<Map<string, R>>,
    private readonly miss: () => R,
    private readonly maxBatch = 500,
  ) {}

  call(key: string, arg: A): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ key, arg, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    const batch: Call<A, R>[] = [];
    const later: Call<A, R>[] = [];
    const keys = new Set<string>();
    for (const c of this.queue) {
      if (keys.has(c.key) || batch.length >= this.maxBatch) later.push(c);
      else (keys.add(c.key), batch.push(c));
    }
    this.queue = later;
    if (later.length > 0) this.schedule();
    if (batch.length === 0) return;
    try {
      const sorted = batch.map((c) => ({ key: c.key, arg: c.arg })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      const found = await this.run(sorted);
      for (const c of batch) c.resolve(found.has(c.key) ? found.get(c.key)! : this.miss());
    } catch (e) {
      for (const c of batch) c.reject(e);
    }
  }
}
