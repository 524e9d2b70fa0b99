/**
 * Leases for duties that must run on one instance at a time (DESIGN §8):
 * the config server's polls and leave steps, the key server's periodic
 * rekeys and convergence. Every instance asks for the lease; the one that
 * holds it does the duty, the others keep asking every `retryMs` and take
 * over when the holder is gone.
 *
 *   ASKING ──lock taken──▶ HOLDING ──connection lost / check fails──▶ ASKING
 *      │                      │
 *      └───────close──────────┴──────────▶ CLOSED
 *
 * On PostgreSQL the lease is a session advisory lock on a connection of its
 * own: the server releases it the moment that connection ends, so a killed
 * holder frees it at once and the next ask (within retryMs) takes it. The
 * holder checks its connection every retryMs and steps down when the check
 * fails, so two holders can overlap by at most that long; the duties are
 * safe to repeat (an epoch is written once, a removed member is removed).
 * One process on SQLite owns its file: its lease is always held.
 */
import pg from 'pg';

export type LeaseState = 'ASKING' | 'HOLDING' | 'CLOSED';

export interface Lease {
  readonly name: string;
  readonly held: boolean;
  /** Called on every change of `held`. */
  onChange(fn: (held: boolean) => void): void;
  close(): Promise<void>;
}

export interface LeaseOptions {
  /** How often a waiting instance asks and the holder checks (ms, default 1000). */
  retryMs?: number;
  log?(level: 'debug' | 'info' | 'warn', msg: string): void;
}

/** The lease of a process that is the only instance (SQLite, memory). */
export class SoleLease implements Lease {
  readonly held = true;
  constructor(readonly name: string) {}
  onChange(): void {}
  async close(): Promise<void> {}
}

export class PgAdvisoryLease implements Lease {
  private state: LeaseState = 'ASKING';
  private client: pg.Client | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly listeners: ((held: boolean) => void)[] = [];
  private readonly retryMs: number;

  constructor(
    private readonly connectionString: string,
    /** Two 32-bit lock keys: the schema (one deployment) and the duty. */
    private readonly keys: [string, string],
    readonly name: string,
    private readonly o: LeaseOptions = {},
  ) {
    this.retryMs = o.retryMs ?? 1_000;
    this.schedule(0);
  }

  get held(): boolean {
    return this.state === 'HOLDING';
  }

  onChange(fn: (held: boolean) => void): void {
    this.listeners.push(fn);
  }

  private to(next: LeaseState): void {
    const was = this.held;
    this.state = next;
    if (this.held !== was) for (const fn of this.listeners) fn(this.held);
  }

  private schedule(ms: number): void {
    if (this.state === 'CLOSED') return;
    this.timer = setTimeout(() => void this.step(), ms);
  }

  private async connect(): Promise<pg.Client> {
    if (this.client) return this.client;
    const c = new pg.Client({ connectionString: this.connectionString });
    c.on('error', () => this.drop('connection error'));
    c.on('end', () => this.drop('connection ended'));
    await c.connect();
    this.client = c;
    return c;
  }

  /** The connection (and with it the lock) is gone: step down, ask again. */
  private drop(why: string): void {
    const c = this.client;
    this.client = null;
    if (c) c.removeAllListeners('end');
    void c?.end().catch(() => {});
    if (this.state === 'HOLDING') this.o.log?.('warn', `lease ${this.name}: lost (${why})`);
    if (this.state !== 'CLOSED') this.to('ASKING');
  }

  private async step(): Promise<void> {
    try {
      const c = await this.connect();
      if (this.state === 'ASKING') {
        const r = await c.query('SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS got', this.keys);
        if (this.state === 'ASKING' && r.rows[0].got === true) {
          this.o.log?.('info', `lease ${this.name}: held`);
          this.to('HOLDING');
        }
      } else if (this.state === 'HOLDING') {
        await c.query('SELECT 1');
      }
    } catch (e) {
      this.drop((e as Error).message);
    }
    this.schedule(this.retryMs);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.to('CLOSED');
    const c = this.client;
    this.client = null;
    if (c) {
      c.removeAllListeners('end');
      await c.end().catch(() => {}); // ending the session releases the lock
    }
  }
}
