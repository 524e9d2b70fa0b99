/**
 * The one-time sign-in token of the web console (`kagi admin login
 * ADMIN-FILE` makes it, the console takes it once): a statement "admin ID
 * asks to sign in at time T" under a MAC only that admin and the config
 * service can make, like the broker's CONNECT password (protocol/connect-auth.ts):
 *
 *   key   = HKDF(X25519(admin sk, config pk), salt = "", info = LABEL)
 *   body  = version (1) || issuedAt ms (uint64 BE) || nonce (16) || id (utf8)
 *   token = base64url(body || HMAC-SHA256(key, LABEL || body))
 *
 * No shared password, nothing sent over the network to make it, nothing
 * stored: the console derives the same key from the config service's
 * secret key and the admin's registered public key. Freshness (a few
 * minutes) and "once" (the nonce) are the console's to check
 * (sessions.ts); this file only makes and opens the statement.
 */
import type { Crypto } from '../../protocol/crypto/backend.js';
import { concat, equalCT, i2osp, utf8, wipe } from '../../protocol/bytes.js';
import { ID_PATTERN } from '../../protocol/limits.js';

const LABEL = utf8('kagi/v1 console login');
const VERSION = 1;
export const LOGIN_NONCE_LENGTH = 16;
const TAG_LENGTH = 32;
const HEAD_LENGTH = 1 + 8 + LOGIN_NONCE_LENGTH;

export interface LoginClaim {
  admin: string;
  issuedAt: number;
  /** Hex of the nonce: what "used once" is kept by. */
  nonce: string;
}

/** Why a token was refused: said to the browser as one word, logged in full. */
export class LoginTokenError extends Error {}

function loginKey(c: Crypto, mySecret: Uint8Array, theirPublic: Uint8Array): Uint8Array {
  const dh = c.dh(mySecret, theirPublic);
  const k = c.hkdf(dh, new Uint8Array(0), LABEL, 32);
  wipe(dh);
  return k;
}

function tag(c: Crypto, key: Uint8Array, body: Uint8Array): Uint8Array {
  return c.hmacSha256(key, concat(LABEL, body));
}

/** The admin's side: a token for `admin`, from its secret key and the config service's public key. */
export function makeLoginToken(c: Crypto, admin: string, adminSecret: Uint8Array, configPublic: Uint8Array, now = Date.now()): string {
  if (!ID_PATTERN.test(admin)) throw new LoginTokenError(`not an admin id: ${admin}`);
  const body = concat(new Uint8Array([VERSION]), i2osp(now, 8), c.randomBytes(LOGIN_NONCE_LENGTH), utf8(admin));
  const key = loginKey(c, adminSecret, configPublic);
  const out = concat(body, tag(c, key, body));
  wipe(key);
  return Buffer.from(out).toString('base64url');
}

/** Read the claim without trusting it: which admin's key to check it with. */
export function readLoginClaim(token: string): LoginClaim & { body: Uint8Array; mac: Uint8Array } {
  if (typeof token !== 'string' || token.length > 512 || !/^[A-Za-z0-9_-]+$/.test(token)) throw new LoginTokenError('malformed');
  const raw = new Uint8Array(Buffer.from(token, 'base64url'));
  if (raw.length <= HEAD_LENGTH + TAG_LENGTH || raw[0] !== VERSION) throw new LoginTokenError('malformed');
  const body = raw.subarray(0, raw.length - TAG_LENGTH);
  const admin = new TextDecoder('utf-8', { fatal: false }).decode(body.subarray(HEAD_LENGTH));
  if (!ID_PATTERN.test(admin)) throw new LoginTokenError('malformed');
  let issuedAt = 0;
  for (let i = 1; i < 9; i++) issuedAt = issuedAt * 256 + body[i]!;
  const nonce = Buffer.from(body.subarray(9, HEAD_LENGTH)).toString('hex');
  return { admin, issuedAt, nonce, body, mac: raw.subarray(raw.length - TAG_LENGTH) };
}

/** The console's side: does the claim carry the MAC of `adminPublic`'s key? (compared in constant time) */
export function verifyLoginClaim(c: Crypto, claim: { body: Uint8Array; mac: Uint8Array }, configSecret: Uint8Array, adminPublic: Uint8Array): boolean {
  const key = loginKey(c, configSecret, adminPublic);
  const ok = equalCT(tag(c, key, claim.body), claim.mac);
  wipe(key);
  return ok;
}
