/**
 * Resumption tickets (issue 21): after a join with the user's password the
 * auth server hands the device a ticket — an id and a 32-byte secret — and
 * later joins present the ticket instead of the password, so an unattended
 * device keeps no password and a re-join costs a hash and a store read, not
 * scrypt.
 *
 *  - On the way out the ticket is sealed under the join request's own
 *    ticket key (RequestSecrets.ticketKey, an HPKE export): the config
 *    server forwards it unopened and never sees a secret, as it never sees
 *    a password. The key is used for this one seal, so a zero nonce is
 *    never repeated under it.
 *  - On the way in the secret travels inside a join request sealed to the
 *    auth server from the device's static key (HPKE auth mode), so it is
 *    bound to that request: a captured request meets the replay guard and
 *    the request's validity, and nobody without the device key can wrap
 *    the secret in a new one.
 *  - The server keeps SHA-256(secret) only (a 256-bit random secret needs
 *    no slow hash); a copy of its tables presents no ticket.
 *  - Every use rotates: the presented ticket is retired and a new one
 *    returned. A retired ticket presented again means two holders of one
 *    ticket — a cloned device — and revokes the whole family (decision 65).
 */
import type { Crypto } from './crypto/backend.js';
import { AEAD_NONCE_LENGTH } from './crypto/backend.js';
import { asBody, bytes, num, str } from './body.js';
import { decodeStrict, encode } from './cbor.js';
import { KagiError } from './errors.js';
import { equalCT, utf8 } from './bytes.js';

const AAD = utf8('kagi/v1 ticket');
export const TICKET_SECRET_LENGTH = 32;
export const TICKET_ID_LENGTH = 16;

/** What a device holds for one (device, user): never the password. */
export interface Ticket {
  /** Hex of 16 random bytes: public, names the row. */
  id: string;
  secret: Uint8Array;
  /** Unix ms after which the server refuses it. */
  expiresAt: number;
}

/** The refusals a ticket can meet; each sends the device back to its password (if it has one). */
export const TICKET_REFUSALS = ['ticket-unknown', 'ticket-expired', 'ticket-reused', 'ticket-invalid'] as const;
export type TicketRefusal = (typeof TICKET_REFUSALS)[number];

export function isTicketRefusal(code: unknown): code is TicketRefusal {
  return (TICKET_REFUSALS as readonly unknown[]).includes(code);
}

export function ticketVerifier(c: Crypto, secret: Uint8Array): Uint8Array {
  return c.sha256(secret);
}

/** Does `secret` match the stored verifier? Compared in constant time. */
export function ticketMatches(c: Crypto, secret: Uint8Array, verifier: Uint8Array): boolean {
  return equalCT(ticketVerifier(c, secret), verifier);
}

/** Seal a ticket under a request's ticket key (used once: zero nonce). */
export function sealTicket(c: Crypto, key: Uint8Array, t: Ticket): Uint8Array {
  return c.seal(key, new Uint8Array(AEAD_NONCE_LENGTH), encodeTicket(t), AAD);
}

/** Open a sealed ticket with the ticket key of the request it answers. */
export function openTicket(c: Crypto, key: Uint8Array, sealed: Uint8Array): Ticket {
  const pt = c.open(key, new Uint8Array(AEAD_NONCE_LENGTH), sealed, AAD);
  if (!pt) throw new KagiError('auth', 'ticket failed authentication');
  return decodeTicket(pt);
}

/** A ticket id as the wire and the store spell it (lower-case hex, 16 bytes). */
export function ticketId(s: string): string {
  if (!/^[0-9a-f]{32}$/.test(s)) throw new KagiError('field', 'ticket id is not 32 hex digits');
  return s;
}

/** The ticket as a join request presents it (inside the sealed request). */
export function presentTicket(t: Ticket): { id: string; secret: Uint8Array } {
  return { id: t.id, secret: t.secret };
}

/** A ticket as CBOR: sealed on the wire, and as an agent stores it. */
export function encodeTicket(t: Ticket): Uint8Array {
  return encode({ id: t.id, secret: t.secret, expiresAt: t.expiresAt });
}

export function decodeTicket(b: Uint8Array): Ticket {
  const x = asBody(decodeStrict(b, 256));
  return { id: ticketId(str(x, 'id', 2 * TICKET_ID_LENGTH)), secret: bytes(x, 'secret', TICKET_SECRET_LENGTH), expiresAt: num(x, 'expiresAt') };
}
