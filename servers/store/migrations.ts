/**
 * The schema's numbered migrations, one list for SQLite and PostgreSQL.
 * Append only: a released migration is never edited (its number is what
 * schema_migrations records). Types are written as {bytes}, {int64}, {serial} and {bitmap}
 * and spelled per engine; everything else is SQL both engines take.
 */
import { SHARED_SEQ_WINDOW } from '../../protocol/replay.js';

const MIGRATIONS: string[] = [
  `CREATE TABLE devices (id TEXT PRIMARY KEY, mac TEXT NOT NULL, public_key {bytes} NOT NULL, kind TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
   CREATE TABLE users (id TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
   CREATE TABLE vpns (id TEXT PRIMARY KEY, protocol TEXT NOT NULL, port INTEGER NOT NULL, priority INTEGER NOT NULL,
     max_bandwidth {int64} NOT NULL, flag INTEGER NOT NULL DEFAULT 0, total_rate {int64} NOT NULL DEFAULT 0);
   CREATE TABLE grants (vpn_id TEXT NOT NULL REFERENCES vpns(id), user_id TEXT NOT NULL REFERENCES users(id), PRIMARY KEY (vpn_id, user_id));
   CREATE TABLE members (vpn_id TEXT NOT NULL REFERENCES vpns(id), device_id TEXT NOT NULL REFERENCES devices(id), user_id TEXT NOT NULL,
     key_id {int64} NOT NULL, network_id TEXT NOT NULL, PRIMARY KEY (vpn_id, device_id));
   CREATE TABLE session_keys (vpn_id TEXT NOT NULL REFERENCES vpns(id), epoch {int64} NOT NULL, key {bytes} NOT NULL, created_at {int64} NOT NULL, PRIMARY KEY (vpn_id, epoch));
   CREATE TABLE config (device_id TEXT PRIMARY KEY, body TEXT NOT NULL);
   CREATE TABLE network_info (device_id TEXT PRIMARY KEY, address TEXT, relay_id TEXT, relay_port TEXT, updated_at {int64} NOT NULL);
   CREATE TABLE numbers (key TEXT PRIMARY KEY, value {int64} NOT NULL);`,
  `ALTER TABLE devices ADD COLUMN relay_id TEXT;
   ALTER TABLE devices ADD COLUMN relay_port TEXT;`,
  `CREATE TABLE channels (owner TEXT NOT NULL, peer TEXT NOT NULL, send {bytes} NOT NULL, recv {bytes} NOT NULL, PRIMARY KEY (owner, peer));
   CREATE TABLE liveness (device_id TEXT PRIMARY KEY, communicating INTEGER NOT NULL, changed_at {int64} NOT NULL);
   ALTER TABLE vpns ADD COLUMN rekey_period_ms {int64} NOT NULL DEFAULT 0;
   ALTER TABLE vpns ADD COLUMN rekey_requested_at {int64} NOT NULL DEFAULT 0;
   CREATE INDEX members_by_device ON members (device_id);`,
  `CREATE TABLE presence (device_id TEXT PRIMARY KEY, online INTEGER NOT NULL, changed_at {int64} NOT NULL);`,
  `CREATE TABLE audit (seq {serial}, at {int64} NOT NULL, actor TEXT NOT NULL, op TEXT NOT NULL, detail TEXT NOT NULL);`,
  // Replay windows (protocol/replay.ts): the highest seq per sender and a
  // bitmap of the 32 below it. Guards that kept only the highest start with
  // everything at or below it seen.
  `CREATE TABLE seq_windows (key TEXT PRIMARY KEY, top {int64} NOT NULL, bits {int64} NOT NULL);
   INSERT INTO seq_windows SELECT key, value, 4294967295 FROM numbers WHERE key LIKE 'rx:%' OR key LIKE 'connect:%';`,
  // PostgreSQL's wider window (SHARED_SEQ_WINDOW) as a bit string, bit 0 =
  // top; NULL until first claimed (then: all at or below top seen). Unused
  // on SQLite, whose one instance keeps the 32-wide window in bits.
  `ALTER TABLE seq_windows ADD COLUMN wide {bitmap};`,
  // Liveness that outlives the process (issue 18): each member's missed
  // polls, written by the lease holder; and the broker (URL) a device's
  // presence was heard on, so a successor knows who was on its broker.
  `ALTER TABLE liveness ADD COLUMN missed INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE presence ADD COLUMN broker TEXT;`,
  // Who each device last joined as, so a grant made later reaches it
  // (servers/config/grant-notices.ts); seeded from today's memberships.
  `CREATE TABLE joined_as (device_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, at {int64} NOT NULL);
   INSERT INTO joined_as SELECT device_id, MIN(user_id), 0 FROM members GROUP BY device_id;`,
  // A MAC already registered is refused at device add: found by index, so
  // provisioning thousands of rows does not scan the table per row.
  `CREATE INDEX devices_by_mac ON devices (mac);`,
  // S405 notices owed to key holders (a member out of a VPN), written with
  // the removal so that one made while no control plane runs is still told.
  `CREATE TABLE owed_notices (vpn_id TEXT NOT NULL, member_id TEXT NOT NULL, holder_id TEXT NOT NULL, reason TEXT NOT NULL,
     since {int64} NOT NULL, PRIMARY KEY (vpn_id, member_id));`,
  // Issue 19 (decisions 63, 64): the seq of the key delivery a keys channel
  // came with, so every instance keeps the channel of the highest-seq
  // delivery, as the holder does; and when each replay window was last
  // claimed (s), so windows of eras nobody uses any more can be swept.
  `ALTER TABLE channels ADD COLUMN seq {int64} NOT NULL DEFAULT 0;
   ALTER TABLE seq_windows ADD COLUMN used_at {int64} NOT NULL DEFAULT 0;`,
  // Failed password attempts per user and per device (servers/auth/throttle.ts),
  // in the store so that every auth instance on it throttles alike.
  `CREATE TABLE password_failures (key TEXT PRIMARY KEY, failures INTEGER NOT NULL, blocked_until {int64} NOT NULL);`,
  // Resumption tickets (issue 21, protocol/ticket.ts): a verifier per
  // ticket, never its secret; a retired ticket stays (used_at, successor)
  // until it expires, so a second use of it is recognised as a theft.
  `CREATE TABLE tickets (id TEXT PRIMARY KEY, device_id TEXT NOT NULL, user_id TEXT NOT NULL, verifier {bytes} NOT NULL,
     issued_at {int64} NOT NULL, expires_at {int64} NOT NULL, used_at {int64}, successor TEXT);
   CREATE INDEX tickets_by_family ON tickets (device_id, user_id);
   CREATE INDEX tickets_by_user ON tickets (user_id);`,
  // What happened to each device last (issue 24, kagi why): its last
  // accepted authentication, its last refusal and its last eviction. One
  // row per device, each event overwriting its own columns; no history.
  `CREATE TABLE device_history (device_id TEXT PRIMARY KEY,
     auth_at {int64}, auth_op TEXT, auth_user TEXT,
     refused_at {int64}, refused_code TEXT, refused_reason TEXT, refused_user TEXT,
     evicted_at {int64}, evicted_from TEXT, evicted_why TEXT);`,
];

const TYPES = {
  sqlite: { bytes: 'BLOB', int64: 'INTEGER', serial: 'INTEGER PRIMARY KEY', bitmap: 'BLOB' },
  postgres: { bytes: 'BYTEA', int64: 'BIGINT', serial: 'BIGSERIAL PRIMARY KEY', bitmap: `BIT(${SHARED_SEQ_WINDOW})` },
} as const;

/** The migrations in one engine's spelling, in order (version = index + 1). */
export function migrations(engine: keyof typeof TYPES): string[] {
  const t = TYPES[engine];
  return MIGRATIONS.map((sql) => sql.replaceAll('{bytes}', t.bytes).replaceAll('{int64}', t.int64).replaceAll('{serial}', t.serial).replaceAll('{bitmap}', t.bitmap));
}
