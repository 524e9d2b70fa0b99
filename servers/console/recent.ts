/**
 * Recent refusals and evictions for the console: the last few of each,
 * taken from the services' own log lines as they are written (a tap on the
 * log function kagi up gives the services). Unlike the per-device record
 * `kagi why` reads (device_history: authenticated, fresh requests only),
 * the lines include refusals of forged, replayed and unknown senders,
 * which an operator watching the console wants to see (decision 95). Kept
 * in memory: what this process saw since it started.
 */
import type { ServiceContext } from '../service-host.js';

export type RecentKind = 'refusal' | 'eviction';

export interface RecentEvent {
  at: string;
  kind: RecentKind;
  /** The device (eviction), or the request refused (refusal). */
  subject: string;
  text: string;
}

type Log = ServiceContext['log'];

/** Which log lines are which event: one pattern each, from auth.ts and membership.ts. */
const PATTERNS: { kind: RecentKind; re: RegExp; subject(m: RegExpMatchArray): string }[] = [
  { kind: 'refusal', re: /^auth: refused (\S+): (.*)$/, subject: (m) => m[1]! },
  { kind: 'eviction', re: /^config: (\S+) evicted from (.*)$/, subject: (m) => m[1]! },
];

export class RecentEvents {
  private readonly events: RecentEvent[] = [];
  /** Bumped on every event: the feed sends a new snapshot when it moves. */
  version = 0;

  constructor(private readonly capacity = 50, private readonly now: () => number = Date.now) {}

  /** A log function that writes through to `log` and notes the lines that are events. */
  tap(log: Log): Log {
    return (level, msg) => {
      this.note(msg);
      log(level, msg);
    };
  }

  note(msg: string): void {
    for (const p of PATTERNS) {
      const m = p.re.exec(msg);
      if (!m) continue;
      this.events.unshift({ at: new Date(this.now()).toISOString(), kind: p.kind, subject: p.subject(m), text: msg.replace(/^(auth|config): /, '') });
      if (this.events.length > this.capacity) this.events.pop();
      this.version++;
      return;
    }
  }

  list(): RecentEvent[] {
    return [...this.events];
  }
}
