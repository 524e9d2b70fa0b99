/**
 * The console's sign-in and its sessions, in memory (a restarted console
 * signs everyone out, which is the safe way round).
 *
 * A login token (login-token.ts) is taken once, while fresh, from an admin
 * that is registered and not revoked; it becomes a session: a random id
 * (the HttpOnly cookie) and a random CSRF token (sent back by the page in a
 * header on every action). A session ends at its expiry, at sign-out, or
 * as soon as its admin is revoked (checked on every request).
 *
 * Tokens made before this console started are refused: the used nonces
 * live only as long as the process, so that is what keeps a token from
 * being taken twice across a restart (decision 94).
 */
import type { Crypto } from '../../protocol/crypto/backend.js';
import { equalCT } from '../../protocol/bytes.js';
import type { Store } from '../store/store.js';
import { LoginTokenError, readLoginClaim, verifyLoginClaim } from './login-token.js';

/** How long a login token may be taken after it is made. */
export const LOGIN_TOKEN_MS = 5 * 60_000;
/** A token from a clock this far ahead is still taken. */
const CLOCK_AHEAD_MS = 30_000;
export const DEFAULT_SESSION_MS = 60 * 60_000;
export const MAX_SESSION_MS = 7 * 24 * 3_600_000;
const SECRET_BYTES = 32;

export interface Session {
  admin: string;
  csrf: string;
  expiresAt: number;
}

export interface SessionOptions {
  crypto: Crypto;
  store: Store;
  /** The config service's secret key: login tokens are MACed to it. */
  configSecret: Uint8Array;
  sessionMs?: number;
  now?: () => number;
}

export class ConsoleSessions {
  private readonly sessions = new Map<string, Session>();
  /** Nonces of tokens taken, until the token would have expired anyway. */
  private readonly usedNonces = new Map<string, number>();
  private readonly now: () => number;
  private readonly startedAt: number;
  readonly sessionMs: number;

  constructor(private readonly o: SessionOptions) {
    this.now = o.now ?? Date.now;
    this.startedAt = this.now();
    this.sessionMs = o.sessionMs ?? DEFAULT_SESSION_MS;
    if (!(this.sessionMs >= 1000 && this.sessionMs <= MAX_SESSION_MS)) throw new Error('console port: the session lifetime (--ui-session) must be 1s..7d');
  }

  /** Take a login token; throws LoginTokenError with the reason (for the log). */
  async signIn(token: string): Promise<{ id: string; session: Session }> {
    const claim = readLoginClaim(token);
    const now = this.now();
    this.prune(now);
    // Cheap checks first: none of them depends on a secret.
    if (claim.issuedAt > now + CLOCK_AHEAD_MS) throw new LoginTokenError(`token of ${claim.admin} is from the future (clock off?)`);
    if (claim.issuedAt + LOGIN_TOKEN_MS < now) throw new LoginTokenError(`token of ${claim.admin} expired (older than ${LOGIN_TOKEN_MS / 60_000} min): run kagi admin login again`);
    if (claim.issuedAt < this.startedAt - CLOCK_AHEAD_MS) throw new LoginTokenError(`token of ${claim.admin} was made before this console started: run kagi admin login again`);
    const admin = await this.o.store.getDevice(claim.admin);
    if (admin?.kind !== 'admin' || admin.revoked) throw new LoginTokenError(`${claim.admin} is not an admin (or is revoked)`);
    if (!verifyLoginClaim(this.o.crypto, claim, this.o.configSecret, admin.publicKey)) throw new LoginTokenError(`token of ${claim.admin} does not verify (another control plane's, or not that admin's key)`);
    if (this.usedNonces.has(claim.nonce)) throw new LoginTokenError(`token of ${claim.admin} was already used: run kagi admin login again`);
    this.usedNonces.set(claim.nonce, claim.issuedAt + LOGIN_TOKEN_MS);
    const id = this.secret();
    const session = { admin: admin.id, csrf: this.secret(), expiresAt: now + this.sessionMs };
    this.sessions.set(id, session);
    return { id, session };
  }

  /** The live session of a cookie value, or undefined (unknown, expired, admin revoked). */
  async session(id: string | undefined): Promise<Session | undefined> {
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    if (s.expiresAt <= this.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    const admin = await this.o.store.getDevice(s.admin);
    if (admin?.kind !== 'admin' || admin.revoked) {
      this.sessions.delete(id);
      return undefined;
    }
    return s;
  }

  /** Does the request's CSRF header match its session's token? (constant time) */
  csrfMatches(s: Session, header: string | undefined): boolean {
    if (typeof header !== 'string') return false;
    const a = Buffer.from(header);
    const b = Buffer.from(s.csrf);
    return a.length === b.length && equalCT(a, b);
  }

  signOut(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  private secret(): string {
    return Buffer.from(this.o.crypto.randomBytes(SECRET_BYTES)).toString('base64url');
  }

  private prune(now: number): void {
    for (const [n, until] of this.usedNonces) if (until < now) this.usedNonces.delete(n);
    for (const [id, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(id);
  }
}
