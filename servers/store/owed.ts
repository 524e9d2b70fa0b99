/**
 * What a removal owes, as SQL both engines run (store.ts, removeMember):
 * its VPN a rekey (the earliest mark is kept) and each removed member's key
 * holder — the relay it sits behind, else the member — an S405 notice.
 * Spelled once; `p(i)` writes the engine's i-th placeholder (? or $i).
 */
export function owedSql(p: (i: number) => string) {
  return {
    /** Params: at; then the caller's WHERE (starting at index 2). */
    rekey: `UPDATE vpns SET rekey_requested_at = ${p(1)} WHERE rekey_requested_at = 0`,
    /** Params: reason, since; then the caller's WHERE on members m (starting at index 3). */
    notice: (where: string) => `INSERT INTO owed_notices (vpn_id, member_id, holder_id, reason, since)
  SELECT m.vpn_id, m.device_id, COALESCE(ni.relay_id, m.device_id), ${p(1)}, ${p(2)} FROM members m LEFT JOIN network_info ni ON ni.device_id = m.device_id
  WHERE ${where}
  ON CONFLICT (vpn_id, member_id) DO UPDATE SET holder_id = excluded.holder_id, reason = excluded.reason, since = excluded.since`,
  };
}
