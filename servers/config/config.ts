/**
 * Config server (patent 1): the composition of its three duties, each in
 * its own file with the state it owns (context.ts is what they share):
 *   join-path.ts   the front door: config (1a) and join (1b), S101–S110
 *   membership.ts  network devices from the tables, leave steps (S404–S405)
 *   monitoring.ts  polls, continue, eviction, presence (1c, S401–S403)
 * Admin requests (admin.request) go to admin-door.ts.
 *
 * Leave (eviction, `leave` from a stopping agent, revoke, VPN delete) is
 * one path: memberships removed → reconcile: network devices programmed
 * without the member, its key holder told (S405), the key server told to
 * rekey the rest (S404).
 */
import { adminDoor } from './admin-door.js';
import { configContext, type ConfigOptions } from './context.js';
import { joinPath } from './join-path.js';
import { membership } from './membership.js';
import { monitoring } from './monitoring.js';
import { every, startService, type ServiceContext } from '../service-host.js';

export { livenessOptions, type ConfigOptions } from './context.js';
export type { LeaveReason } from './membership.js';

export async function startConfig(ctx: ServiceContext, o: ConfigOptions) {
  const c = configContext(ctx, o);
  const members = membership(c);
  const monitor = monitoring(c, members);
  const warn = (e: unknown) => ctx.log('warn', `config: ${(e as Error).message}`);
  const door = joinPath(c, members, monitor.alive);
  const running = await startService('config', ctx, {
    onForeign: door.handle,
    onChannel: monitor.onChannel,
    onRequest: adminDoor(ctx, { evictAfter: c.live.evictAfter, pollIntervalMs: c.live.pollIntervalMs, drivers: o.drivers.map((d) => d.name) }),
    // Header checks before any key lookup or crypto (Peer.takesRequest): admins ask, holders answer polls.
    takesRequest: (env) => env.type === 'admin.request',
    takesChannel: (env) => env.type === 'poll.reply' || env.type === 'continue' || env.type === 'leave',
  }, c.bind, (topic, payload) => void monitor.onState(topic, payload).catch(warn));
  c.started(running);
  await members.reconcile(); // heal whatever changed while we were down
  if (running.lease.held) await monitor.lead();
  running.lease.onChange((held) => void (held ? monitor.lead() : Promise.resolve(ctx.log('warn', 'config: lost the lease: another instance polls'))).catch(warn));
  // Admin changes (kagi vpn delete, grants) land in the store from other
  // processes; a short reconcile loop applies them to the network devices
  // and tells the members within about one period.
  const timers = [
    every(o.reconcileMs ?? 500, () => (door.sweep(), members.reconcileIfIdle()), (e) => ctx.log('warn', `config: reconcile failed: ${e.message}`)),
    every(c.live.pollIntervalMs, monitor.pollRound, (e) => ctx.log('warn', `config: poll round failed: ${e.message}`)),
  ];
  return {
    ...running,
    reconcile: members.reconcile,
    addressChanged: members.addressChanged,
    /** The embedded broker admitted this device: its polls can count (reach.ts). */
    connected: monitor.connected,
    liveness: c.liveness,
    close: async () => {
      for (const t of timers) clearInterval(t);
      await running.close();
    },
  };
}
