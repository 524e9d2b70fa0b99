/**
 * Sealed control messages (DESIGN §4), built on the envelope and HPKE.
 *
 *  request (kind sealed): HPKE auth mode from the sender's static key to the
 *    receiver's, single shot; the receiver learns which static key sent it.
 *    The plaintext is [issuedAt, body, era]: issuedAt (uint32 seconds, Unix
 *    time by the sender's corrected clock) is authenticated with the body,
 *    and the receiver refuses a request outside its validity (requestAge);
 *    era (uint32) is the sender's counter era (replay.ts), which picks the
 *    receiver's replay window.
 *  reply (kind reply): ChaCha20-Poly1305 under a key exported from the
 *    request's HPKE context. Only the two ends of that request know it, so a
 *    reply is bound to its request by the key itself, not only by reqId.
 *  channel (kind channel): ChaCha20-Poly1305 under per-direction keys
 *    exported from the context of the device's authentication request.
 *
 * Symmetric messages use nonce = I2OSP(seq, 12): seq is unique per
 * (sender, receiver) pair and each key belongs to one direction of one pair,
 * so no nonce repeats under a key. The AAD is always the header as received.
 */
import type { Crypto } from './crypto/backend.js';
import { AEAD_NONCE_LENGTH } from './crypto/backend.js';
import { KagiError } from './errors.js';
import { LIMITS } from './limits.js';
import { i2osp, utf8, wipe } from './bytes.js';
import { decodeStrict, encode } from './cbor.js';
import { setupRecipient, setupSender, type HpkeContext } from './hpke.js';
import { encodeEnvelope, encodeEnvelopeHeader, type Envelope } from './envelope.js';
import { MESSAGE_TYPES, type MessageKind, type MessageType } from './messages.js';

const INFO = utf8('kagi/v1 sealed');
const REPLY_LABEL = utf8('kagi/v1 reply');
const CHANNEL_LABEL = utf8('kagi/v1 channel');
const TICKET_LABEL = utf8('kagi/v1 ticket');
const KEYS_CHANNEL_LABEL = utf8('kagi/v1 keys channel');

/**
 * How long a request is good for after it was issued (s): three times the
 * services' default request timeout (10 s), so the broker's queueing and the
 * config → auth forwarding inside a device's request fit; every requester
 * gives up well before, and its retry is a new request with a new time.
 */
export const REQUEST_VALIDITY_S = 30;
/** Clock difference between two parties that is tolerated (s). */
export const CLOCK_SKEW_S = 30;

/**
 * The ages a receiver accepts: issuedAt within [now − late, now + early].
 * A service (a real clock, NTP) allows a request to be late by the
 * validity plus the skew and early by the skew. A device allows both by
 * validity plus skew: a device whose own requests a service accepted may be
 * that far behind it, and must still take the service's requests.
 */
export interface AgeBounds {
  late: number;
  early: number;
}
export const SERVICE_AGE_BOUNDS: AgeBounds = { late: REQUEST_VALIDITY_S + CLOCK_SKEW_S, early: CLOCK_SKEW_S };
export const DEVICE_AGE_BOUNDS: AgeBounds = { late: REQUEST_VALIDITY_S + CLOCK_SKEW_S, early: REQUEST_VALIDITY_S + CLOCK_SKEW_S };

/** Throws KagiError('stale') unless `issuedAt` is within `b` of `now` (both in seconds). Times are public. */
export function checkRequestAge(issuedAt: number, now: number, b: AgeBounds = SERVICE_AGE_BOUNDS): void {
  if (issuedAt < now - b.late) throw new KagiError('stale', `request issued ${now - issuedAt} s ago (valid for ${b.late} s)`);
  if (issuedAt > now + b.early) throw new KagiError('stale', `request issued ${issuedAt - now} s ahead of our clock (at most ${b.early} s)`);
}

/** Seconds for the wire: a uint32 (0 for a clock that cannot say). */
export function wireSeconds(ms: number): number {
  const s = Math.floor(ms / 1000);
  return Number.isSafeInteger(s) && s >= 0 && s <= LIMITS.maxSeq ? s : 0;
}

export interface Route {
  type: MessageType;
  from: string;
  to: string;
  seq: number;
  reqId: number;
}

/** Keys that outlive one sealed request: its reply key and channel keys. */
export class RequestSecrets {
  constructor(private readonly ctx: HpkeContext) {}

  /** Key for the one reply to this request. */
  replyKey(): Uint8Array {
    return this.ctx.export(REPLY_LABEL, 32);
  }

  /** Channel keys: [requester → receiver, receiver → requester]. */
  channelKeys(): { up: Uint8Array; down: Uint8Array } {
    return this.keyPair(CHANNEL_LABEL);
  }

  /**
   * Key for the resumption ticket the auth server returns to this request
   * (ticket.ts): an export only the two ends can make. The config server,
   * which gets the reply and channel keys, cannot derive it.
   */
  ticketKey(): Uint8Array {
    return this.ctx.export(TICKET_LABEL, 32);
  }

  /**
   * A join's keys channel (decision 134): [key server → holder, holder →
   * key server]. The auth server hands it, with the verdict, to the config
   * server, which gives it to the key server; the joining holder derives it
   * itself, so its keys come as a channel message under it, not as an HPKE
   * delivery of their own.
   */
  keysChannelKeys(): { up: Uint8Array; down: Uint8Array } {
    return this.keyPair(KEYS_CHANNEL_LABEL);
  }

  /** A 64-byte export as two 32-byte keys (copies: the export itself is wiped). */
  private keyPair(label: Uint8Array): { up: Uint8Array; down: Uint8Array } {
    const k = this.ctx.export(label, 64);
    const pair = { up: k.slice(0, 32), down: k.slice(32) };
    wipe(k);
    return pair;
  }

  destroy(): void {
    this.ctx.destroy();
  }
}

function kindOf(type: MessageType): MessageKind {
  return MESSAGE_TYPES[type].kind;
}

function wantKind(type: MessageType, kind: MessageKind): void {
  if (kindOf(type) !== kind) throw new KagiError('argument', `${type} is a ${kindOf(type)} message, not ${kind}`);
}

function openBody(pt: Uint8Array | null): unknown {
  if (!pt) throw new KagiError('auth', 'message failed authentication');
  return decodeStrict(pt, LIMITS.ciphertextBytes);
}

function isUint32(n: unknown): n is number {
  return Number.isInteger(n) && (n as number) >= 0 && (n as number) <= LIMITS.maxSeq;
}

/**
 * Seal a request to `pkR` from the static key `skS` (HPKE auth mode),
 * issued at `issuedAt` (uint32 seconds by the sender's corrected clock),
 * its seq counted in the sender's `era` (uint32; 0 for shared counters).
 */
export function sealRequest(c: Crypto, r: Route, skS: Uint8Array, pkR: Uint8Array, body: unknown, issuedAt: number, era: number) {
  wantKind(r.type, 'sealed');
  if (!isUint32(issuedAt)) throw new KagiError('argument', 'issuedAt must be uint32 seconds');
  if (!isUint32(era)) throw new KagiError('argument', 'era must be a uint32');
  const { enc, ctx } = setupSender(c, pkR, { skS, info: INFO });
  const header = encodeEnvelopeHeader({ ...r, enc });
  const bytes = encodeEnvelope(header, ctx.seal(encode([issuedAt, body, era]), header));
  return { bytes, secrets: new RequestSecrets(ctx) };
}

/**
 * Open a sealed request; `pkS` is the static key the sender must hold. Its
 * age is the caller's to check (checkRequestAge), with its own clock.
 */
export function openRequest(c: Crypto, env: Envelope, skR: Uint8Array, pkS: Uint8Array) {
  if (env.kind !== 'sealed' || !env.enc) throw new KagiError('field', `${env.type} is not a sealed request`);
  const ctx = setupRecipient(c, env.enc, skR, { pkS, info: INFO });
  let pt;
  try {
    pt = openBody(ctx.open(env.ciphertext, env.header));
  } catch (e) {
    ctx.destroy();
    throw e;
  }
  if (!Array.isArray(pt) || pt.length !== 3 || !isUint32(pt[0]) || !isUint32(pt[2])) {
    ctx.destroy();
    throw new KagiError('field', `${env.type}: the sealed plaintext is not [issuedAt, body, era]`);
  }
  return { body: pt[1] as unknown, issuedAt: pt[0] as number, era: pt[2] as number, secrets: new RequestSecrets(ctx) };
}

/** Seal a reply or channel message under a symmetric key. */
export function sealSymmetric(c: Crypto, r: Route, key: Uint8Array, body: unknown): Uint8Array {
  if (kindOf(r.type) === 'sealed') throw new KagiError('argument', `${r.type} must be sealed to a static key`);
  const header = encodeEnvelopeHeader({ ...r, enc: null });
  return encodeEnvelope(header, c.seal(key, i2osp(r.seq, AEAD_NONCE_LENGTH), encode(body), header));
}

export function openSymmetric(c: Crypto, env: Envelope, key: Uint8Array): unknown {
  if (env.kind === 'sealed') throw new KagiError('field', `${env.type} is not symmetric`);
  return openBody(c.open(key, i2osp(env.seq, AEAD_NONCE_LENGTH), env.ciphertext, env.header));
}

interface Pending {
  peer: string;
  key: Uint8Array;
}

/**
 * The requester's side of reply binding: a reply is opened only if we sent a
 * request with its reqId to the peer it comes from, and only once.
 */
export class PendingReplies {
  private readonly pending = new Map<number, Pending>();

  expect(reqId: number, peer: string, secrets: RequestSecrets): void {
    if (this.pending.has(reqId)) throw new KagiError('argument', `reqId ${reqId} already pending`);
    this.pending.set(reqId, { peer, key: secrets.replyKey() });
  }

  get size(): number {
    return this.pending.size;
  }

  /** Open the reply to one of our requests; it is consumed on success. */
  open(c: Crypto, env: Envelope): unknown {
    const p = this.pending.get(env.reqId);
    if (!p || p.peer !== env.from || env.kind !== 'reply') {
      throw new KagiError('unexpected', `no request ${env.reqId} of ours to ${env.from}`);
    }
    const body = openSymmetric(c, env, p.key);
    this.pending.delete(env.reqId);
    wipe(p.key);
    return body;
  }

  /** Give up on a request (timeout): a late reply is then unexpected. */
  cancel(reqId: number): void {
    const p = this.pending.get(reqId);
    if (p) wipe(p.key);
    this.pending.delete(reqId);
  }
}

