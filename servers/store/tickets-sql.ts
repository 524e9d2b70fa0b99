/**
 * The tickets table's statements, spelled once for both engines: `p(i)`
 * is the engine's i-th placeholder (SQLite ?, PostgreSQL $i).
 */
import type { TicketRow } from './store.js';
import { u8 } from './rows.js';

export function ticketSql(p: (i: number) => string) {
  return {
    get: `SELECT * FROM tickets WHERE id = ${p(1)}`,
    insert: `INSERT INTO tickets (id, device_id, user_id, verifier, issued_at, expires_at, used_at, successor)
      VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, NULL, NULL)`,
    dropFamily: `DELETE FROM tickets WHERE device_id = ${p(1)} AND user_id = ${p(2)}`,
    dropDevice: `DELETE FROM tickets WHERE device_id = ${p(1)}`,
    dropUser: `DELETE FROM tickets WHERE user_id = ${p(1)}`,
    retire: `UPDATE tickets SET used_at = ${p(1)}, successor = ${p(2)} WHERE id = ${p(3)} AND used_at IS NULL`,
    dropExpired: `DELETE FROM tickets WHERE device_id = ${p(1)} AND user_id = ${p(2)} AND expires_at < ${p(3)}`,
    summary: `SELECT device_id, MAX(CASE WHEN used_at IS NULL AND expires_at >= ${p(1)} THEN 1 ELSE 0 END) AS live, MAX(used_at) AS last_used
      FROM tickets GROUP BY device_id`,
  };
}

export function ticketInsertArgs(t: TicketRow): unknown[] {
  return [t.id, t.deviceId, t.userId, Buffer.from(t.verifier), t.issuedAt, t.expiresAt];
}

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are untyped driver output */
export function ticketRow(r: any): TicketRow {
  return {
    id: r.id, deviceId: r.device_id, userId: r.user_id, verifier: u8(r.verifier), issuedAt: Number(r.issued_at), expiresAt: Number(r.expires_at),
    usedAt: r.used_at === null ? null : Number(r.used_at), successor: r.successor,
  };
}

export function ticketSummaryMap(rows: any[]): Map<string, { live: boolean; lastUsedAt: number | null }> {
  return new Map(rows.map((r) => [r.device_id as string, { live: Number(r.live) === 1, lastUsedAt: r.last_used === null ? null : Number(r.last_used) }]));
}
