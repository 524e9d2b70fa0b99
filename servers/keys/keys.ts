/**
 * Key server (patent 3): per-VPN session keys (3b) and their distribution to
 * members (3a), sealed to each member's static key; the member acknowledges.
 * Periodic and on-leave rekeying arrive with the key lifecycle (issue 7).
 */
import { asBody, list, str } from '../../protocol/body.js';
import type { Incoming, Peer, Reply } from '../../protocol/peer.js';
import { topics } from '../../protocol/topics.js';
import { GROUP_KEY_LENGTH } from '../../protocol/vpn-frame.js';
import { startService, type ServiceContext } from '../service-host.js';
import { ConflictError, type SessionKeyRow } from '../store/store.js';

export async function startKeys(ctx: ServiceContext) {
  let peer!: Peer;

  /** The VPN's current key, made (epoch 1) on first use. */
  async function currentKey(vpnId: string): Promise<SessionKeyRow> {
    const have = await ctx.store.currentSessionKey(vpnId);
    if (have) return have;
    try {
      await ctx.store.putSessionKey({ vpnId, epoch: 1, key: ctx.crypto.randomBytes(GROUP_KEY_LENGTH), createdAt: Date.now() });
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e; // another join made it first
    }
    return (await ctx.store.currentSessionKey(vpnId))!;
  }

  async function issue(deviceId: string, vpnIds: string[]): Promise<Reply> {
    const device = await ctx.store.getDevice(deviceId);
    if (!device || device.revoked) return { type: 'service.response', body: { ok: false, reason: `no device ${deviceId}` } };
    const vpns = [];
    for (const id of vpnIds) {
      const v = await ctx.store.getVpn(id);
      if (!v) continue;
      const k = await currentKey(id);
      vpns.push({ id, epoch: k.epoch, key: k.key, protocol: v.protocol, port: v.port });
    }
    const ack = await peer.request({ to: deviceId, pkR: device.publicKey, topic: topics.inbox(deviceId), type: 'keys.deliver', body: { vpns }, timeoutMs: ctx.timeoutMs });
    ack.secrets.destroy();
    if (ack.type !== 'keys.ack') return { type: 'service.response', body: { ok: false, reason: `${deviceId} did not acknowledge keys` } };
    ctx.log('info', `keys: ${deviceId} holds ${vpns.map((v) => `${v.id}#${v.epoch}`).join(', ')}`);
    return { type: 'service.response', body: { ok: true, epochs: Object.fromEntries(vpns.map((v) => [v.id, v.epoch])) } };
  }

  async function onRequest(m: Incoming): Promise<Reply | undefined> {
    if (m.env.from !== 'config' || m.env.type !== 'service.request') return undefined;
    const b = asBody(m.body);
    if (str(b, 'op', 32) !== 'keys.issue') return { type: 'service.response', body: { ok: false, reason: 'unknown op' } };
    try {
      return await issue(str(b, 'deviceId', 64), list(b, 'vpns').map(String));
    } catch (e) {
      return { type: 'service.response', body: { ok: false, reason: (e as Error).message } };
    }
  }

  return startService('keys', ctx, { onRequest }, (p) => (peer = p));
}
