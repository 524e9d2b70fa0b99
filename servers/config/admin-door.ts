/**
 * The remote admin API (DESIGN §8 operations): an operator's CLI seals an
 * `admin.request` { op, args } to the config server with its admin key
 * (kagi admin add) over the broker, like every control message, and gets
 * `admin.response` { result } or `error` { reason } back under the
 * request's reply key. The Peer has already opened the request with the
 * sender's key from the devices table and checked its seq; here the sender
 * must also be an admin (a device's key opens nothing here) and the op runs
 * through the same runAdminOp as the CLI on a data dir.
 */
import type { Incoming, Reply } from '../../protocol/peer.js';
import { asBody, str } from '../../protocol/body.js';
import { isKagiError } from '../../protocol/errors.js';
import { encode } from '../../protocol/cbor.js';
import { LIMITS } from '../../protocol/limits.js';
import { AEAD_TAG_LENGTH } from '../../protocol/crypto/backend.js';
import { publicKeys } from '../identity.js';
import { ADMIN_OPS, runAdminOp } from '../admin-ops.js';
import type { WhySettings } from '../why/explain.js';
import { AdminError } from '../admin.js';
import { ConflictError } from '../store/store.js';
import type { ServiceContext } from '../service-host.js';

export function adminDoor(ctx: ServiceContext, why: WhySettings = {}): (m: Incoming) => Promise<Reply | undefined> {
  const refuse = (reason: string): Reply => ({ type: 'error', body: { reason } });
  return async (m) => {
    if (m.env.type !== 'admin.request') return undefined; // nothing else is sealed to config
    const who = await ctx.store.getDevice(m.env.from);
    if (who?.kind !== 'admin' || who.revoked) {
      ctx.log('warn', `config: admin request from ${m.env.from}, which is not an admin: refused`);
      ctx.metrics.count('kagi_refusals_total', { reason: 'not-admin' });
      return refuse('not an admin');
    }
    let op = '?';
    try {
      const b = asBody(m.body);
      op = str(b, 'op', 64);
      const result = await runAdminOp({ store: ctx.store, services: async () => publicKeys(ctx.keys), actor: `admin:${who.id}`, why }, op, b.args);
      const body = { result };
      // One answer is one control message: a status of a large fleet may not fit.
      const size = encode(body).length;
      if (size > LIMITS.ciphertextBytes - AEAD_TAG_LENGTH) {
        throw new AdminError(`the answer to ${op} is ${Math.ceil(size / 1024)} KiB, more than one control message carries (${Math.floor(LIMITS.ciphertextBytes / 1024)} KiB): ${op === 'audit' ? 'ask for fewer rows (--limit)' : "run it on the control plane's host (--data or --store)"}`);
      }
      ctx.log('info', `config: admin ${who.id}: ${op}`);
      ctx.metrics.count('kagi_admin_ops_total', { op, result: 'ok' });
      return { type: 'admin.response', body };
    } catch (e) {
      ctx.metrics.count('kagi_admin_ops_total', { op: ADMIN_OPS.includes(op) ? op : 'unknown', result: 'refused' });
      // What the operator must fix goes back to them; anything else is ours to log.
      if (e instanceof AdminError || e instanceof ConflictError || isKagiError(e, 'field')) return refuse((e as Error).message);
      ctx.log('warn', `config: admin ${who.id}: ${op} failed: ${(e as Error).message}`);
      return refuse(`${op} failed on the control plane (see its log)`);
    }
  };
}
