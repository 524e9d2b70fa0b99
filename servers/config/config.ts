/**
 * Config server (patent 1): the front door. Device config (1a) and VPN
 * membership (1b) in the patent's order:
 *   config.request → auth verifies (2a) → config sent (S104)
 *   join.request → auth checks the user (2b) → network devices programmed →
 *   key server distributes keys (3a) and the terminal acknowledges →
 *   join.response.
 * Requests arrive sealed to the auth server and are forwarded unopened.
 */
import type { Envelope } from '../../protocol/envelope.js';
import { asBody, bytes, list, num, str, type Body } from '../../protocol/body.js';
import type { Peer, Reply } from '../../protocol/peer.js';
import { topics } from '../../protocol/topics.js';
import { publicKeys } from '../identity.js';
import { startService, type ServiceContext } from '../service-host.js';
import type { DesiredState, NetworkDriver } from '../../network/driver.js';

export interface ConfigOptions {
  drivers: NetworkDriver[];
  /** The address a device connects from, where the broker tells us. */
  addressOf?(deviceId: string): string | undefined;
  pollIntervalMs?: number;
  /** How often the tables are re-read and applied (ms). */
  reconcileMs?: number;
}

export async function startConfig(ctx: ServiceContext, o: ConfigOptions) {
  let peer!: Peer;
  /** Channel keys per device, from its authentication (polls: issue 7). */
  const channels = new Map<string, { up: Uint8Array; down: Uint8Array }>();

  async function ask(to: 'auth' | 'keys', body: Body): Promise<Body> {
    const r = await peer.request({ to, pkR: ctx.keys[to].publicKey, topic: topics.service(to, 'service'), type: 'service.request', body, timeoutMs: ctx.timeoutMs });
    r.secrets.destroy();
    return asBody(r.body);
  }

  /** Desired state of every network device, from the tables. */
  async function desired(): Promise<DesiredState> {
    const vpns = [];
    for (const v of await ctx.store.listVpns()) {
      const members = [];
      for (const m of await ctx.store.members(v.id)) {
        const info = await ctx.store.getNetworkInfo(m.deviceId);
        members.push({ deviceId: m.deviceId, address: info?.address ?? null, via: info?.relayId ?? null });
      }
      vpns.push({ id: v.id, protocol: v.protocol, port: v.port, members });
    }
    return { vpns };
  }

  /** Members as of the last reconcile, so a removal can be told (S405). */
  let last: DesiredState = { vpns: [] };

  // One reconcile at a time, in order: a stale state applied after a newer
  // one would reopen or close the wrong thing and report false leaves.
  let chain: Promise<void> = Promise.resolve();
  function reconcile(): Promise<void> {
    const run = chain.then(reconcileOnce);
    chain = run.catch(() => {});
    return run;
  }

  async function reconcileOnce(): Promise<void> {
    const state = await desired();
    for (const d of o.drivers) await d.apply(state);
    const now = new Set(state.vpns.flatMap((v) => v.members.map((m) => `${v.id}/${m.deviceId}`)));
    const shrunk = new Set<string>();
    for (const v of last.vpns) {
      for (const m of v.members) {
        if (now.has(`${v.id}/${m.deviceId}`)) continue;
        void tellLeft(v.id, m.deviceId, m.via);
        shrunk.add(v.id);
      }
    }
    last = state;
    for (const v of state.vpns) if (shrunk.has(v.id) && v.members.length > 0) void rekey(v.id);
  }

  /** S404 and beyond: a VPN lost a member; the key server rekeys the rest. */
  async function rekey(vpnId: string): Promise<void> {
    try {
      const members = [];
      for (const m of await ctx.store.members(vpnId)) {
        const info = await ctx.store.getNetworkInfo(m.deviceId);
        members.push(info?.relayId ? { deviceId: m.deviceId, holder: info.relayId, port: info.relayPort } : { deviceId: m.deviceId, holder: m.deviceId });
      }
      const r = await ask('keys', { op: 'keys.rekey', vpn: vpnId, members });
      if (!r.ok) throw new Error(String(r.reason));
      for (const m of await ctx.store.members(vpnId)) await ctx.store.putMember({ ...m, keyId: num(r, 'epoch') });
    } catch (e) {
      ctx.log('warn', `config: rekey of ${vpnId} failed: ${(e as Error).message}`);
    }
  }

  /** Tell the holder of a member's keys that the member is out of a VPN. */
  async function tellLeft(vpnId: string, deviceId: string, via: string | null): Promise<void> {
    const holder = via ?? deviceId;
    try {
      const d = await ctx.store.getDevice(holder);
      if (!d || d.revoked) return;
      const r = await peer.request({ to: holder, pkR: d.publicKey, topic: topics.inbox(holder), type: 'notice', body: { op: 'left', vpn: vpnId, member: deviceId }, timeoutMs: ctx.timeoutMs });
      r.secrets.destroy();
      ctx.log('info', `config: told ${holder} that ${deviceId} is out of ${vpnId}`);
    } catch (e) {
      ctx.log('warn', `config: could not tell ${holder} that ${deviceId} left ${vpnId}: ${(e as Error).message}`);
    }
  }

  async function refuseDevice(v: Body): Promise<void> {
    if (!(v.replyKey instanceof Uint8Array)) return; // nothing to seal a refusal with
    await peer.sendReply(str(v, 'replyTo', 64), num(v, 'reqId'), bytes(v, 'replyKey'), { type: 'error', body: { reason: v.reason } });
  }

  async function configure(v: Body): Promise<void> {
    const deviceId = str(v, 'deviceId', 64);
    const replyTo = str(v, 'replyTo', 64);
    const via = v.via ? asBody(v.via) : null;
    if (!via) channels.set(deviceId, { up: bytes(v, 'channelUp', 32), down: bytes(v, 'channelDown', 32) });
    // 1f: where the device is: its broker address, or which relay port.
    const address = via ? null : (o.addressOf?.(deviceId) ?? null);
    await ctx.store.putNetworkInfo({ deviceId, address, relayId: via ? str(via, 'relay', 64) : null, relayPort: via ? str(via, 'port', 64) : null, updatedAt: Date.now() });
    const stored = await ctx.store.getConfig(deviceId);
    const config = stored?.body ?? { deviceId, kind: v.kind, pollIntervalMs: o.pollIntervalMs ?? 30_000, services: publicKeys(ctx.keys) };
    if (!stored) await ctx.store.putConfig({ deviceId, body: config });
    const reply: Reply = { type: 'config.response', body: { config } };
    await peer.sendReply(replyTo, num(v, 'reqId'), bytes(v, 'replyKey'), reply);
    ctx.log('info', `config: sent config to ${deviceId}`);
  }

  async function join(v: Body): Promise<void> {
    const deviceId = str(v, 'deviceId', 64);
    const replyTo = str(v, 'replyTo', 64);
    const userId = str(v, 'user', 64);
    const vpns = list(v, 'vpns').map((x) => asBody(x));
    const via = v.via ? asBody(v.via) : null;
    if (!via) {
      // S302–S303: the address the broker sees, or (behind an external
      // broker, which does not tell us) the one the device reported.
      const reported = Array.isArray(v.addresses) ? v.addresses.filter((a): a is string => typeof a === 'string' && a.length <= 64)[0] : undefined;
      const address = o.addressOf?.(deviceId) ?? reported ?? (await ctx.store.getNetworkInfo(deviceId))?.address ?? null;
      await ctx.store.putNetworkInfo({ deviceId, address, relayId: null, relayPort: null, updatedAt: Date.now() });
    }
    const info = await ctx.store.getNetworkInfo(deviceId);
    const networkId = via ? `${str(via, 'relay', 64)}:${str(via, 'port', 64)}` : (info?.address ?? 'broker');
    for (const x of vpns) {
      const old = (await ctx.store.membershipsOf(deviceId)).find((m) => m.vpnId === x.id);
      await ctx.store.putMember({ vpnId: str(x, 'id', 64), deviceId, userId, keyId: old?.keyId ?? 0, networkId });
    }
    await reconcile(); // program the network devices before keys go out
    // Keys for a plaintext terminal go to its relay, for its port.
    const issued = await ask('keys', { op: 'keys.issue', deviceId, vpns: vpns.map((x) => x.id), ...(via ? { deliverTo: via.relay, port: via.port } : {}) });
    if (!issued.ok) return refuseDevice({ ...v, reason: `key distribution failed: ${String(issued.reason)}` });
    const epochs = asBody(issued.epochs);
    for (const x of vpns) await ctx.store.putMember({ vpnId: str(x, 'id', 64), deviceId, userId, keyId: num(epochs, str(x, 'id', 64)), networkId });
    const out = vpns.map((x) => ({ id: str(x, 'id', 64), protocol: x.protocol, port: x.port, epoch: epochs[str(x, 'id', 64)] }));
    await peer.sendReply(replyTo, num(v, 'reqId'), bytes(v, 'replyKey'), { type: 'join.response', body: { user: userId, vpns: out } });
    ctx.log('info', `config: ${deviceId} (${userId}) joined ${out.map((x) => x.id).join(', ')}`);
  }

  /** Front door: the device's request is sealed to auth; forward it unopened. */
  async function onForeign(env: Envelope, raw: Uint8Array): Promise<void> {
    if (env.to !== 'auth' || (env.type !== 'config.request' && env.type !== 'join.request')) return;
    const op = env.type === 'config.request' ? 'device.auth' : 'user.join';
    const verdict = await ask('auth', { op, envelope: raw });
    if (!verdict.ok) return refuseDevice(verdict);
    return op === 'device.auth' ? configure(verdict) : join(verdict);
  }

  /**
   * A device connected to the broker from an address (S304–S306): if it is
   * a VPN member somewhere else, record the new address and reconcile, so
   * the old address is closed and the new one opened.
   */
  async function addressChanged(deviceId: string, address: string): Promise<void> {
    const info = await ctx.store.getNetworkInfo(deviceId);
    if (!info || info.relayId || info.address === address) return;
    await ctx.store.putNetworkInfo({ ...info, address, updatedAt: Date.now() });
    if ((await ctx.store.membershipsOf(deviceId)).length === 0) return;
    ctx.log('info', `config: ${deviceId} moved from ${info.address ?? '-'} to ${address}`);
    await reconcile();
  }

  const running = await startService('config', ctx, { onForeign }, (p) => (peer = p));
  await reconcile(); // heal whatever changed while we were down
  // Admin changes (kagi vpn delete, grants) land in the store from other
  // processes; a short reconcile loop applies them to the network devices
  // and tells the members within about one period.
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    reconcile().catch((e) => ctx.log('warn', `config: reconcile failed: ${(e as Error).message}`)).finally(() => (busy = false));
  }, o.reconcileMs ?? 500);
  return {
    ...running,
    reconcile,
    addressChanged,
    channels,
    close: async () => {
      clearInterval(timer);
      await running.close();
    },
  };
}
