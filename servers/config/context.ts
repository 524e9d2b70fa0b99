/**
 * What the config server's three duties share (config.ts composes them):
 * the service context, the settings, the liveness table, the Peer and the
 * lease. Each duty keeps the rest of its state to itself:
 *   join-path.ts   configure, join, refusals, channel renewal
 *   membership.ts  desired state, reconcile, tell, leave steps, rekey on leave
 *                  (and grant-notices.ts: grants made after a join)
 *   monitoring.ts  poll rounds, continue/vouch, eviction, presence
 *                  (and reach.ts: whose polls may count)
 */
import { asBody, type Body } from '../../protocol/body.js';
import type { Peer } from '../../protocol/peer.js';
import { topics } from '../../protocol/topics.js';
import type { NetworkDriver } from '../../network/driver.js';
import type { RunningService, ServiceContext } from '../service-host.js';
import { LivenessTable } from './liveness.js';

export interface ConfigOptions {
  drivers: NetworkDriver[];
  /** The address a device connects from, where the broker tells us. */
  addressOf?(deviceId: string): string | undefined;
  /** S401: how often each key holder is polled (ms). */
  pollIntervalMs?: number;
  /** Polls missed in a row before a member is evicted. */
  evictAfter?: number;
  /** S403: a holder not polled for this long sends continue (ms). */
  continueAfterMs?: number;
  /** How often the tables are re-read and applied (ms). */
  reconcileMs?: number;
  /** Embodiment 5: the link's capacity (bits/s) the VPNs share; 0 = unknown, nothing is cut. */
  linkCapacity?: number;
  /** Device requests past the cheap checks at once (admission.ts; default: 32 where auth runs in this process, else admittedBeside()). */
  admitted?: number;
}

export interface LivenessSettings {
  pollIntervalMs: number;
  evictAfter: number;
  continueAfterMs: number;
}

/**
 * Continue-after when none is given: 2.5 poll intervals (polls of one
 * holder are 0.5–1.5 intervals apart, decision 34), but never so late that
 * a holder nobody polls is evicted before its continue: at most evict-after
 * − 0.5 intervals (so `--evict-after 2` gets 1.5, and 1 gets 0.5).
 */
export function defaultContinueAfter(pollIntervalMs: number, evictAfter: number): number {
  return Math.round(pollIntervalMs * Math.min(2.5, evictAfter - 0.5));
}

export function livenessOptions(o: Pick<ConfigOptions, 'pollIntervalMs' | 'evictAfter' | 'continueAfterMs'>): LivenessSettings {
  const pollIntervalMs = o.pollIntervalMs ?? 30_000;
  const evictAfter = o.evictAfter ?? 3;
  if (!(pollIntervalMs >= 50)) throw new RangeError('the poll interval must be at least 50 ms');
  if (!Number.isInteger(evictAfter) || evictAfter < 1) throw new RangeError('evict-after must be a positive whole number of polls');
  const continueAfterMs = o.continueAfterMs ?? defaultContinueAfter(pollIntervalMs, evictAfter);
  // A member that is not polled must get its continue in before it is evicted.
  if (!(continueAfterMs > 0 && continueAfterMs < evictAfter * pollIntervalMs)) {
    const limit = evictAfter * pollIntervalMs;
    throw new RangeError(`continue-after (${continueAfterMs} ms) must be below evict-after × poll interval (${limit} ms): pass a continue-after below ${limit} ms (or leave it out: the default fits), or raise evict-after`);
  }
  return { pollIntervalMs, evictAfter, continueAfterMs };
}

export interface ConfigContext {
  ctx: ServiceContext;
  o: ConfigOptions;
  live: LivenessSettings;
  /** What devices are told of liveness in config.response and join.response. */
  wire: { pollIntervalMs: number; continueAfterMs: number };
  /** Missed polls per member: counted by monitoring, reset by joins and leaves. */
  liveness: LivenessTable;
  peer(): Peer;
  /** The once-only duties (polls, telling members, leave rekeys) run where the lease is. */
  leading(): boolean;
  /** Our own link to the broker is up. */
  connected(): boolean;
  /** A service.request to auth or keys (by a call when it runs in this process); the answer's body. `aside`: see ServiceDoor. */
  ask(to: 'auth' | 'keys', body: Body, aside?: () => void): Promise<Body>;
  /** Called once the service runs (messages may arrive before). */
  bind(peer: Peer): void;
  started(service: RunningService): void;
}

export function configContext(ctx: ServiceContext, o: ConfigOptions): ConfigContext {
  const live = livenessOptions(o);
  let peer: Peer | undefined;
  let service: RunningService | undefined;
  const c: ConfigContext = {
    ctx,
    o,
    live,
    wire: { pollIntervalMs: live.pollIntervalMs, continueAfterMs: live.continueAfterMs },
    liveness: new LivenessTable(live.evictAfter),
    peer: () => peer!,
    leading: () => service?.lease.held === true,
    connected: () => service?.link.connected === true,
    async ask(to, body, aside) {
      if (ctx.local?.has(to)) return ctx.local.ask('config', to, body, aside);
      const r = await c.peer().request({ to, pkR: ctx.keys[to].publicKey, topic: topics.service(to, 'service'), type: 'service.request', body, timeoutMs: ctx.timeoutMs });
      r.secrets.destroy();
      return asBody(r.body);
    },
    bind: (p) => void (peer = p),
    started: (s) => void (service = s),
  };
  return c;
}
