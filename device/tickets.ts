/**
 * An agent's resumption tickets (protocol/ticket.ts), one per member and
 * user it joins as, kept in the platform's secret store so a restarted
 * agent re-joins without the password (Node: a 0600 file beside the device
 * file; boards: the host bridge's storage, or memory with `storage: none`).
 */
import { decodeTicket, encodeTicket, isTicketRefusal, presentTicket, type Ticket } from '../protocol/ticket.js';
import { wipe } from '../protocol/bytes.js';
import type { Reply } from '../protocol/peer.js';
import type { Platform, SecretStore } from './platform.js';
import { RefusedError } from './session.js';

export class MemorySecretStore implements SecretStore {
  private readonly m = new Map<string, Uint8Array>();
  async get(key: string) {
    return this.m.get(key);
  }
  async set(key: string, value: Uint8Array) {
    this.m.set(key, value.slice());
  }
  async delete(key: string) {
    const v = this.m.get(key);
    if (v) wipe(v);
    this.m.delete(key);
  }
}

/** What a join request presents: the password, or a ticket (inside the sealed request either way). */
export type JoinCredential = { password: string } | { ticket: { id: string; secret: Uint8Array } };

/** An answer to a join, with the new ticket auth sealed for us (if any). */
export type JoinAnswer = Reply & { ticket?: Ticket };

export class TicketWallet {
  constructor(
    private readonly store: SecretStore,
    private readonly log: Platform['log'],
  ) {}

  async get(key: string): Promise<Ticket | undefined> {
    const b = await this.store.get(`ticket:${key}`);
    if (!b) return undefined;
    try {
      return decodeTicket(b);
    } catch {
      this.log('warn', `ticket for ${key} is unreadable: dropped`);
      await this.store.delete(`ticket:${key}`);
      return undefined;
    }
  }

  async has(key: string): Promise<boolean> {
    return (await this.get(key)) !== undefined;
  }

  async put(key: string, t: Ticket): Promise<void> {
    await this.store.set(`ticket:${key}`, encodeTicket(t));
    wipe(t.secret);
  }

  async drop(key: string): Promise<void> {
    await this.store.delete(`ticket:${key}`);
  }

  /**
   * Join with the ticket held for `key`, else with the password. A refused
   * ticket is dropped, and the join made again with the password if we
   * have one; without one the refusal stands (the operator gives the
   * password once more). Whatever ticket comes back replaces the old one,
   * also in a refusal made after auth accepted us (it retired ours).
   */
  async join(key: string, password: string | undefined, ask: (c: JoinCredential) => Promise<JoinAnswer>): Promise<JoinAnswer> {
    const held = await this.get(key);
    if (!held && password === undefined) throw new RefusedError(`no ticket for ${key} and no password: join once with the password`, 'no-credential');
    try {
      const r = await ask(held ? { ticket: presentTicket(held) } : { password: password! });
      if (r.ticket) await this.put(key, r.ticket);
      return r;
    } catch (e) {
      if (!(e instanceof RefusedError)) throw e;
      if (e.ticket) await this.put(key, e.ticket);
      if (!held || !isTicketRefusal(e.code)) throw e;
      await this.drop(key);
      this.log('warn', `ticket for ${key} refused (${e.message}); ${password !== undefined ? 'joining with the password' : 'the password is needed: start the agent with --password-stdin'}`);
      if (password === undefined) throw e;
      return this.join(key, password, ask);
    } finally {
      if (held) wipe(held.secret);
    }
  }
}
