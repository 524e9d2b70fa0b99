/**
 * The auth server's side of resumption tickets (protocol/ticket.ts): issue
 * one after a password join, and redeem a presented one — a SHA-256 and a
 * store read, no scrypt — rotating it into the next.
 *
 * A retired ticket presented again is a theft signal (two holders of one
 * ticket: a cloned device, a copied state file): the whole (device, user)
 * family is dropped and the device must use the password again. One
 * exception keeps an honest device from locking itself out when the reply
 * that carried its new ticket was lost: a retired ticket whose successor
 * was never presented, shown again within LOST_REPLY_GRACE_MS of its
 * retirement, rotates that successor instead (decision 65). A clone that
 * gets in this way is caught the next time the other holder presents.
 */
import { toHex } from '../../protocol/bytes.js';
import { ticketMatches, ticketVerifier, TICKET_ID_LENGTH, TICKET_SECRET_LENGTH, type Ticket, type TicketRefusal } from '../../protocol/ticket.js';
import type { ServiceContext } from '../service-host.js';
import type { TicketRow } from '../store/store.js';

export const DEFAULT_TICKET_LIFETIME_MS = 30 * 24 * 3600_000;
/** Longer than a device's join timeout and retry, short enough that a clone has little room. */
export const LOST_REPLY_GRACE_MS = 120_000;

export type Redeemed = { ticket: Ticket } | { refusal: [TicketRefusal, string] };

export class TicketDesk {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly lifetimeMs = DEFAULT_TICKET_LIFETIME_MS,
  ) {}

  private make(deviceId: string, userId: string, now: number): { ticket: Ticket; row: TicketRow } {
    const secret = this.ctx.crypto.randomBytes(TICKET_SECRET_LENGTH);
    const id = toHex(this.ctx.crypto.randomBytes(TICKET_ID_LENGTH));
    const expiresAt = now + this.lifetimeMs;
    const row = { id, deviceId, userId, verifier: ticketVerifier(this.ctx.crypto, secret), issuedAt: now, expiresAt, usedAt: null, successor: null };
    return { ticket: { id, secret, expiresAt }, row };
  }

  /** After a join with the password: a family of one, replacing whatever the pair held. */
  async issueFirst(deviceId: string, userId: string): Promise<Ticket> {
    const { ticket, row } = this.make(deviceId, userId, Date.now());
    await this.ctx.store.startTicketFamily(row);
    this.ctx.metrics.count('kagi_tickets_issued_total', { how: 'password' });
    return ticket;
  }

  /** A ticket presented by `deviceId` (or for the terminal it speaks for) as `userId`. */
  async redeem(deviceId: string, userId: string, presented: { id: string; secret: Uint8Array }): Promise<Redeemed> {
    const row = await this.ctx.store.getTicket(presented.id);
    if (!row) return { refusal: ['ticket-unknown', `no ticket ${presented.id}`] };
    if (!ticketMatches(this.ctx.crypto, presented.secret, row.verifier)) return { refusal: ['ticket-invalid', `ticket ${presented.id} does not verify`] };
    // The right secret from the wrong device or for the wrong user: a copy.
    if (row.deviceId !== deviceId || row.userId !== userId) return this.theft(row, `presented by ${deviceId} as ${userId}`);
    const now = Date.now();
    if (row.expiresAt < now) return { refusal: ['ticket-expired', `ticket ${row.id} of ${deviceId} expired ${new Date(row.expiresAt).toISOString()}`] };
    let live = row;
    if (row.usedAt !== null) {
      const next = row.successor ? await this.ctx.store.getTicket(row.successor) : undefined;
      const lostReply = next !== undefined && next.usedAt === null && now - row.usedAt <= LOST_REPLY_GRACE_MS;
      if (!lostReply) return this.theft(row, 'presented again after it was used');
      live = next;
    }
    const { ticket, row: nextRow } = this.make(deviceId, userId, now);
    // Two requests racing with one live ticket: only one rotates it.
    if (!(await this.ctx.store.rotateTicket(live.id, nextRow, now))) return this.theft(row, 'presented twice at once');
    this.ctx.metrics.count('kagi_ticket_joins_total');
    this.ctx.metrics.count('kagi_tickets_issued_total', { how: 'rotation' });
    return { ticket };
  }

  private async theft(row: TicketRow, what: string): Promise<Redeemed> {
    const dropped = await this.ctx.store.dropTickets({ deviceId: row.deviceId, userId: row.userId });
    this.ctx.metrics.count('kagi_ticket_thefts_total');
    this.ctx.log('warn', `auth: ticket ${row.id} of ${row.deviceId} as ${row.userId} ${what}: a copy is in use; ${dropped} ticket(s) of the pair dropped, the password is needed again`);
    return { refusal: ['ticket-reused', `ticket ${row.id} was used before: every ticket of ${row.deviceId} as ${row.userId} is revoked; join with the password`] };
  }
}
