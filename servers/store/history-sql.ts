/**
 * The device_history table (migration 16, kagi why) as SQL both engines
 * run: each kind of event is an upsert of its own columns, so an eviction
 * never wipes the last refusal. Spelled once; `p(i)` writes the engine's
 * i-th placeholder (? or $i).
 */
import type { DeviceHistory } from './store.js';

export function historySql(p: (i: number) => string) {
  const upsert = (cols: string[]) =>
    `INSERT INTO device_history (device_id, ${cols.join(', ')}) VALUES (${['device_id', ...cols].map((_c, i) => p(i + 1)).join(', ')})
     ON CONFLICT (device_id) DO UPDATE SET ${cols.map((c) => `${c} = excluded.${c}`).join(', ')}`;
  return {
    /** Params: device, at, op, user. */
    auth: upsert(['auth_at', 'auth_op', 'auth_user']),
    /** Params: device, at, code, reason, user. */
    refusal: upsert(['refused_at', 'refused_code', 'refused_reason', 'refused_user']),
    /** Params: device, at, from (comma separated), why. */
    eviction: upsert(['evicted_at', 'evicted_from', 'evicted_why']),
    /** Params: device. */
    read: `SELECT * FROM device_history WHERE device_id = ${p(1)}`,
  };
}

/** A device_history row (or none) as DeviceHistory; bigint columns may come back as strings (pg). */
export function historyRow(r: Record<string, unknown> | undefined): DeviceHistory {
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  const s = (v: unknown) => (typeof v === 'string' ? v : null);
  const authAt = n(r?.auth_at);
  const refusedAt = n(r?.refused_at);
  const evictedAt = n(r?.evicted_at);
  return {
    auth: authAt === null ? null : { at: authAt, op: s(r!.auth_op) ?? '', user: s(r!.auth_user) },
    refusal: refusedAt === null ? null : { at: refusedAt, code: s(r!.refused_code) ?? '', reason: s(r!.refused_reason) ?? '', user: s(r!.refused_user) },
    eviction: evictedAt === null ? null : { at: evictedAt, from: (s(r!.evicted_from) ?? '').split(',').filter(Boolean), why: s(r!.evicted_why) ?? '' },
  };
}
