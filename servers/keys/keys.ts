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

  /** Keys for `deviceId`, sealed to `holderId` (itself, or its relay for `port`). */
  async function issue(deviceId: string, vpnIds: string[], holderId: string, port: string | undefined): Promise<Reply> {
    const device = await ctx.store.getDevice(holderId);
    if (!device || device.revoked) return { type: 'service.response', body: { ok: false, reason: `no device ${holderId}` } };
    const vpns = [];
    for (const id of vpnIds) {
      const v = await ctx.store.getVpn(id);
      if (!v) continue;
      const k = await currentKey(id);
      vpns.push({ id, epoch: k.epoch, key: k.key, protocol: v.protocol, port: v.port });
    }
    const body = { vpns, ...(port !== undefined ? { port, member: deviceId } : {}) };
    const ack = await peer.request({ to: holderId, pkR: device.publicKey, topic: topics.inbox(holderId), type: 'keys.deliver', body, timeoutMs: ctx.timeoutMs });
    ack.secrets.destroy();
    if (ack.type !== 'keys.ack') return { type: 'service.response', body: { ok: false, reason: `${holderId} did not acknowledge keys` } };
    const where = port !== undefined ? `${holderId} (port ${port}, for ${deviceId})` : deviceId;
    ctx.log('info', `keys: ${where} holds ${vpns.map((v) => `${v.id}#${v.epoch}`).join(', ')}`);
    return { type: 'service.response', body: { ok: true, epochs: Object.fromEntries(vpns.map((v) => [v.id, v.epoch])) } };
  }

  /**
   * A member left: a new epoch with a fresh random key goes to every
   * remaining member, so the leaver cannot read what is sent after it left
   * (forward secrecy on leave, beyond the patent).
   */
  async function rekey(vpnId: string, members: { deviceId: string; holder: string; port?: string }[]): Promise<Reply> {
    const old = await ctx.store.currentSessionKey(vpnId);
    const epoch = (old?.epoch ?? 0) + 1;
    await ctx.store.putSessionKey({ vpnId, epoch, key: ctx.crypto.randomBytes(GROUP_KEY_LENGTH), createdAt: Date.now() });
    const results = await Promise.allSettled(members.map((m) => issue(m.deviceId, [vpnId], m.holder, m.port)));
    const failed = results.filter((r) => r.status === 'rejected' || !asBody((r.value as Reply).body).ok).length;
    ctx.log('info', `keys: rekeyed ${vpnId} to epoch ${epoch} for ${members.length - failed}/${members.length} members`);
    return { type: 'service.response', body: { ok: true, epoch, failed } };
  }

  async function onRequest(m: Incoming): Promise<Reply | undefined> {
    if (m.env.from !== 'config' || m.env.type !== 'service.request') return undefined;
    const b = asBody(m.body);
    if (str(b, 'op', 32) === 'keys.rekey') {
      const members = list(b, 'members').map((x) => {
        const v = asBody(x);
        return { deviceId: str(v, 'deviceId', 64), holder: str(v, 'holder', 64), ...(v.port !== undefined ? { port: str(v, 'port', 64) } : {}) };
      });
      return rekey(str(b, 'vpn', 64), members);
    }
    if (str(b, 'op', 32) !== 'keys.issue') return { type: 'service.response', body: { ok: false, reason: 'unknown op' } };
    try {
      const deviceId = str(b, 'deviceId', 64);
      const relay = b.deliverTo === undefined ? undefined : str(b, 'deliverTo', 64);
      return await issue(deviceId, list(b, 'vpns').map(String), relay ?? deviceId, relay ? str(b, 'port', 64) : undefined);
    } catch (e) {
      return { type: 'service.response', body: { ok: false, reason: (e as Error).message } };
    }
  }

  return startService('keys', ctx, { onRequest }, (p) => (peer = p));
}
