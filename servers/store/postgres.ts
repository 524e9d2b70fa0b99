/**
 * PostgreSQL store (pg) for deployments with more than one node: the same
 * tables as SQLite, in one schema (default `kagi`) of the database the URL
 * names, with the same numbered migrations in schema_migrations. Instances
 * starting together migrate one at a time (an advisory lock). Flows that
 * change several rows (delete a VPN, revoke) are transactions.
 *
 *   kagi up --store postgres://user@host:5432/db[?schema=name]
 */
import pg from 'pg';
import type { NumberStore } from '../../protocol/store.js';
import { SHARED_SEQ_WINDOW } from '../../protocol/replay.js';
import type { ChannelBook, ChannelKeys } from '../../protocol/channel.js';
import { Coalescer } from './coalesce.js';
import { ConflictError, type OwedNotice, type AuditRow, type ConfigRow, type MemberRow, type NetworkInfoRow, type SessionKeyRow, type Store, type TicketRow, type UserRow } from './store.js';
import { auditRow, owedNoticeRow, deviceRow, keyHolders, keyHolderSql, memberRow, networkInfoRow, placedMembers, PLACED_MEMBERS_SQL, presenceMap, sessionKeyRow, u8, vpnRow, VPN_COLUMNS } from './rows.js';
import { migrations } from './migrations.js';
import { owedSql } from './owed.js';
import { historyRow, historySql } from './history-sql.js';
import { ticketInsertArgs, ticketRow, ticketSql, ticketSummaryMap } from './tickets-sql.js';
import { channelWindowPrefix, nowSeconds, windowsSql } from './windows.js';
import { PgAdvisoryLease, type Lease, type LeaseOptions } from './lease.js';

import { NoDataError } from '../data-dir.js';

const MIGRATIONS = migrations('postgres');

const OWED = owedSql((i) => `$${i}`);
const KEY_HOLDERS = keyHolderSql((i) => `$${i}`);
const HISTORY = historySql((i) => `$${i}`);
const TICKETS = ticketSql((i) => `$${i}`);
const WINDOWS = windowsSql((i) => `$${i}::text`, (i) => `$${i}::bigint`);

/** Any 64-bit number: the lock every instance takes to migrate. */
const MIGRATION_LOCK = 0x6b616769; // "kagi"

/**
 * slideWindow (protocol/replay.ts) as one statement over a batch of
 * (key, seq), with the SHARED_SEQ_WINDOW-wide window in a bit string (bit 0
 * = top, bit i = top - i): instances claiming the same seq at once cannot
 * both win, because the upsert locks the row and the WHERE leaves it
 * untouched (no row returned) for a seq seen or too old. A row from before
 * the wide window (wide NULL) counts everything at or below its top as seen.
 */
const W = SHARED_SEQ_WINDOW;
const WIDE = `COALESCE(seq_windows.wide, ~repeat('0', ${W})::bit(${W}))`;
const BACK = '(seq_windows.top - excluded.top)';
const CLAIM = `INSERT INTO seq_windows (key, top, bits, wide, used_at)
  SELECT k, s, 0, set_bit(repeat('0', ${W})::bit(${W}), 0, 1), a FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(k, s, a)
  ON CONFLICT (key) DO UPDATE SET
  top = GREATEST(seq_windows.top, excluded.top),
  used_at = GREATEST(seq_windows.used_at, excluded.used_at),
  wide = CASE WHEN excluded.top > seq_windows.top
    THEN set_bit(${WIDE} >> LEAST(excluded.top - seq_windows.top, ${W})::int, 0, 1)
    ELSE set_bit(${WIDE}, ${BACK}::int, 1) END
  WHERE excluded.top > seq_windows.top OR (${BACK} < ${W} AND get_bit(${WIDE}, ${BACK}::int) = 0)
  RETURNING key`;

/** Atomic adds to many counters in one statement; each key's new value comes back. */
const ADD = `INSERT INTO numbers (key, value) SELECT * FROM unnest($1::text[], $2::bigint[])
  ON CONFLICT (key) DO UPDATE SET value = numbers.value + excluded.value RETURNING key, value`;

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;

function isConflict(e: unknown): boolean {
  // 23505 unique_violation, 23503 foreign_key_violation
  const code = (e as { code?: string })?.code;
  return code === '23505' || code === '23503';
}

/** A connection URL fit for a message: its password replaced by ***. */
export function redactUrl(url: string): string {
  return url.replace(/:[^:@/]*@/, ':***@');
}

/** The connection URL and the schema it asks for (?schema=, default kagi). */
export function parsePostgresUrl(url: string): { connectionString: string; schema: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--store: not a URL: ${url}`);
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new Error(`--store: expected postgres://…, not ${u.protocol}`);
  const schema = u.searchParams.get('schema') ?? 'kagi';
  if (!SCHEMA.test(schema)) throw new Error(`--store: schema must be lower-case letters, digits and _, not '${schema}'`);
  u.searchParams.delete('schema');
  return { connectionString: u.toString(), schema };
}

export class PgStore implements Store {
  readonly numbers: NumberStore;
  // The per-message calls of the poll round and of every channel message, coalesced (coalesce.ts).
  private readonly adds = new Coalescer<number, number>(async (b) => this.rowsByKey(ADD, [b.map((x) => x.key), b.map((x) => x.arg)], (r) => Number(r.value)), () => 0);
  private readonly claims = new Coalescer<{ seq: number; at: number }, boolean>(
    async (b) => this.rowsByKey(CLAIM, [b.map((x) => x.key), b.map((x) => x.arg.seq), b.map((x) => x.arg.at)], () => true),
    () => false,
  );
  private readonly channelGets = {
    config: this.channelGetter('config'),
    keys: this.channelGetter('keys'),
  };
  private readonly networkInfos = new Coalescer<null, NetworkInfoRow | undefined>(async (b) => {
    const rows = (await this.q('SELECT * FROM network_info WHERE device_id = ANY($1::text[])', [b.map((x) => x.key)])).rows;
    return new Map(rows.map((r) => [r.device_id as string, networkInfoRow(r)]));
  }, () => undefined);
  private readonly memberships = new Coalescer<null, MemberRow[]>(async (b) => {
    const out = new Map<string, MemberRow[]>();
    for (const r of (await this.q('SELECT * FROM members WHERE device_id = ANY($1::text[]) ORDER BY vpn_id', [b.map((x) => x.key)])).rows) {
      const m = memberRow(r);
      out.set(m.deviceId, [...(out.get(m.deviceId) ?? []), m]);
    }
    return out;
  }, () => []);

  private constructor(private readonly pool: pg.Pool, readonly schema: string, private readonly connectionString: string) {
    this.numbers = {
      get: async (k) => {
        const r = await this.q('SELECT value FROM numbers WHERE key = $1', [k]);
        return r.rows[0] ? Number(r.rows[0].value) : undefined;
      },
      // Counters only move forward, whichever instance writes last.
      set: async (k, v) => void (await this.q('INSERT INTO numbers VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = GREATEST(numbers.value, excluded.value)', [k, v])),
      add: (k, n) => this.adds.call(k, n),
      claim: (k, seq, at = nowSeconds()) => this.claims.call(k, { seq, at }),
      claimWindow: SHARED_SEQ_WINDOW,
    };
  }

  /** Connect, create the schema if needed and migrate it. */
  static async open(url: string, o: { create?: boolean } = {}): Promise<PgStore> {
    const { connectionString, schema } = parsePostgresUrl(url);
    const pool = new pg.Pool({ connectionString, max: 8, options: `-c search_path=${schema}` });
    // An idle client that loses its server must not crash the process.
    pool.on('error', () => {});
    try {
      if (o.create === false && !(await hasTables(pool, schema))) {
        throw new NoDataError(`no kagi tables in schema ${schema}: check the URL and ?schema=, or make them with kagi init --store (kagi up makes them too)`);
      }
      await migrate(pool, schema);
    } catch (e) {
      await pool.end();
      const m = `PostgreSQL store ${redactUrl(connectionString)}: ${(e as Error).message}`;
      throw e instanceof NoDataError ? new NoDataError(m) : new Error(m);
    }
    return new PgStore(pool, schema, connectionString);
  }

  private q(sql: string, args: unknown[] = []): Promise<pg.QueryResult> {
    return this.pool.query(sql, args);
  }

  /**
   * Run a statement that returns a `key` column, and map its rows by key.
   * Its keys come sorted (coalesce.ts), so statements of several instances
   * do not deadlock each other; a deadlock with anything else aborted the
   * whole statement, which is then safe to run again.
   */
  private async rowsByKey<R>(sql: string, args: unknown[], value: (row: Record<string, unknown>) => R): Promise<Map<string, R>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return new Map((await this.q(sql, args)).rows.map((r: Record<string, unknown>) => [r.key as string, value(r)]));
      } catch (e) {
        if ((e as { code?: string }).code !== '40P01' || attempt === 3) throw e; // deadlock_detected
      }
    }
  }

  private channelGetter(owner: 'config' | 'keys') {
    return new Coalescer<null, ChannelKeys | undefined>(async (b) => {
      const rows = (await this.q('SELECT peer, send, recv FROM channels WHERE owner = $1 AND peer = ANY($2::text[])', [owner, b.map((x) => x.key)])).rows;
      return new Map(rows.map((r) => [r.peer as string, { send: u8(r.send as Buffer), recv: u8(r.recv as Buffer) }]));
    }, () => undefined);
  }

  private async insert(sql: string, what: string, args: unknown[]): Promise<void> {
    try {
      await this.q(sql, args);
    } catch (e) {
      if (isConflict(e)) throw new ConflictError(`${what} already exists or refers to something missing`);
      throw e;
    }
  }

  /** Run `fn` in one transaction on one connection. */
  private tx<T>(fn: (q: (sql: string, args?: unknown[]) => Promise<pg.QueryResult>) => Promise<T>): Promise<T> {
    return transaction(this.pool, (c) => fn((sql, args = []) => c.query(sql, args)));
  }

  async addDevice(d: Parameters<Store['addDevice']>[0]) {
    await this.insert('INSERT INTO devices (id, mac, public_key, kind, relay_id, relay_port) VALUES ($1, $2, $3, $4, $5, $6)', `device ${d.id}`, [d.id, d.mac, Buffer.from(d.publicKey), d.kind, d.relayId ?? null, d.relayPort ?? null]);
  }
  async getDevice(id: string) {
    const r = (await this.q('SELECT * FROM devices WHERE id = $1', [id])).rows[0];
    return r ? deviceRow(r) : undefined;
  }
  async devicesWithMac(mac: string) {
    return (await this.q('SELECT id FROM devices WHERE mac = $1 ORDER BY id', [mac])).rows.map((r: { id: string }) => r.id);
  }
  async listDevices() {
    return (await this.q('SELECT * FROM devices ORDER BY id')).rows.map(deviceRow);
  }

  async revokedDevices() {
    return (await this.q('SELECT id FROM devices WHERE revoked = 1 ORDER BY id')).rows.map((r) => r.id as string);
  }

  async revokeDevice(id: string) {
    return this.tx(async (q) => {
      if (((await q('UPDATE devices SET revoked = 1 WHERE id = $1', [id])).rowCount ?? 0) === 0) return false;
      await q(`${OWED.rekey} AND id IN (SELECT vpn_id FROM members WHERE device_id = $2)`, [Date.now(), id]);
      await q(OWED.notice('m.device_id = $3'), ['revoked', Date.now(), id]);
      await q('DELETE FROM members WHERE device_id = $1', [id]);
      await q('DELETE FROM channels WHERE peer = $1', [id]);
      await q(TICKETS.dropDevice, [id]);
      await q(WINDOWS.ofChannelsOf, [id]);
      return true;
    });
  }

  async setPassword(userId: string, passwordHash: string) {
    return this.tx(async (q) => {
      if (((await q('UPDATE users SET password_hash = $1 WHERE id = $2', [passwordHash, userId])).rowCount ?? 0) === 0) return false;
      await q(TICKETS.dropUser, [userId]);
      return true;
    });
  }

  async getTicket(id: string) {
    const r = (await this.q(TICKETS.get, [id])).rows[0];
    return r ? ticketRow(r) : undefined;
  }
  async startTicketFamily(t: TicketRow) {
    await this.tx(async (q) => {
      await q(TICKETS.dropFamily, [t.deviceId, t.userId]);
      await q(TICKETS.insert, ticketInsertArgs(t));
    });
  }
  async rotateTicket(oldId: string, next: TicketRow, at: number) {
    return this.tx(async (q) => {
      if (((await q(TICKETS.retire, [at, next.id, oldId])).rowCount ?? 0) === 0) return false;
      await q(TICKETS.dropExpired, [next.deviceId, next.userId, at]);
      await q(TICKETS.insert, ticketInsertArgs(next));
      return true;
    });
  }
  async dropTickets(who: { deviceId?: string; userId?: string }) {
    const r = who.deviceId !== undefined && who.userId !== undefined ? await this.q(TICKETS.dropFamily, [who.deviceId, who.userId])
      : who.deviceId !== undefined ? await this.q(TICKETS.dropDevice, [who.deviceId])
      : who.userId !== undefined ? await this.q(TICKETS.dropUser, [who.userId]) : undefined;
    return r?.rowCount ?? 0;
  }
  async ticketSummary(now: number) {
    return ticketSummaryMap((await this.q(TICKETS.summary, [now])).rows);
  }

  async addUser(u: UserRow) {
    await this.insert('INSERT INTO users VALUES ($1, $2)', `user ${u.id}`, [u.id, u.passwordHash]);
  }
  async getUser(id: string) {
    const r = (await this.q('SELECT * FROM users WHERE id = $1', [id])).rows[0];
    return r ? { id: r.id as string, passwordHash: r.password_hash as string } : undefined;
  }

  async claimPasswordAttempt(check: string[], count: string[], now: number, delayAfter: (failures: number) => number) {
    const counted = [...new Set(count)].sort();
    const all = [...new Set([...check, ...count])].sort();
    // Rows made first and locked in key order: instances claiming the same
    // keys at once take turns, and never deadlock.
    return this.tx(async (q) => {
      await q('INSERT INTO password_failures SELECT k, 0, 0 FROM unnest($1::text[]) AS k ON CONFLICT (key) DO NOTHING', [counted]);
      const rows = (await q('SELECT key, failures, blocked_until FROM password_failures WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE', [all])).rows;
      const blocked = Math.max(0, ...rows.filter((r) => check.includes(r.key as string)).map((r) => Number(r.blocked_until)).filter((b) => b > now));
      if (blocked > 0) {
        await q('DELETE FROM password_failures WHERE key = ANY($1::text[]) AND failures = 0', [counted]); // made above: nothing to keep
        return blocked;
      }
      for (const r of rows.filter((x) => counted.includes(x.key as string))) {
        const failures = Number(r.failures) + 1;
        await q('UPDATE password_failures SET failures = $2, blocked_until = $3 WHERE key = $1', [r.key, failures, now + delayAfter(failures)]);
      }
      return 0;
    });
  }
  async clearPasswordFailures(keys: string[]) {
    await this.q('DELETE FROM password_failures WHERE key = ANY($1::text[])', [keys]);
  }
  async prunePasswordFailures(before: number) {
    return (await this.q('DELETE FROM password_failures WHERE blocked_until < $1', [before])).rowCount ?? 0;
  }
  async passwordFailures(key: string) {
    const r = (await this.q('SELECT failures, blocked_until FROM password_failures WHERE key = $1', [key])).rows[0];
    return r ? { failures: Number(r.failures), blockedUntil: Number(r.blocked_until) } : undefined;
  }

  async addVpn(v: Parameters<Store['addVpn']>[0]) {
    await this.insert(
      'INSERT INTO vpns (id, protocol, port, priority, max_bandwidth, flag, total_rate, rekey_period_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
      `VPN ${v.id}`, [v.id, v.protocol, v.port, v.priority, v.maxBandwidth, v.flag, v.totalRate, v.rekeyPeriodMs ?? 0],
    );
  }
  async updateVpn(id: string, patch: Parameters<Store['updateVpn']>[1]) {
    const set = (Object.keys(patch) as (keyof typeof VPN_COLUMNS)[]).filter((k) => patch[k] !== undefined);
    if (set.length === 0) return !!(await this.getVpn(id));
    const r = await this.q(`UPDATE vpns SET ${set.map((k, i) => `${VPN_COLUMNS[k]} = $${i + 1}`).join(', ')} WHERE id = $${set.length + 1}`, [...set.map((k) => patch[k]), id]);
    return (r.rowCount ?? 0) > 0;
  }
  async setRekeyRequest(vpnId: string, at: number) {
    return ((await this.q('UPDATE vpns SET rekey_requested_at = $1 WHERE id = $2', [at, vpnId])).rowCount ?? 0) > 0;
  }
  async getVpn(id: string) {
    const r = (await this.q('SELECT * FROM vpns WHERE id = $1', [id])).rows[0];
    return r ? vpnRow(r) : undefined;
  }
  async listVpns() {
    return (await this.q('SELECT * FROM vpns ORDER BY id')).rows.map(vpnRow);
  }
  async deleteVpn(id: string) {
    return this.tx(async (q) => {
      await q(OWED.notice('m.vpn_id = $3'), ['deleted', Date.now(), id]);
      for (const t of ['grants', 'members', 'session_keys']) await q(`DELETE FROM ${t} WHERE vpn_id = $1`, [id]);
      return ((await q('DELETE FROM vpns WHERE id = $1', [id])).rowCount ?? 0) > 0;
    });
  }

  async grant(vpnId: string, userId: string) {
    await this.insert('INSERT INTO grants VALUES ($1, $2)', `grant of ${vpnId} to ${userId}`, [vpnId, userId]);
  }
  async revoke(vpnId: string, userId: string) {
    return this.tx(async (q) => {
      await q(OWED.notice('m.vpn_id = $3 AND m.user_id = $4'), ['revoked', Date.now(), vpnId, userId]);
      const m = (await q('DELETE FROM members WHERE vpn_id = $1 AND user_id = $2', [vpnId, userId])).rowCount ?? 0;
      const g = (await q('DELETE FROM grants WHERE vpn_id = $1 AND user_id = $2', [vpnId, userId])).rowCount ?? 0;
      if (m > 0) await q(`${OWED.rekey} AND id = $2`, [Date.now(), vpnId]);
      return m + g > 0;
    });
  }
  async grantsOf(userId: string) {
    return (await this.q('SELECT vpn_id FROM grants WHERE user_id = $1 ORDER BY vpn_id', [userId])).rows.map((r) => r.vpn_id as string);
  }
  async listGrants() {
    return (await this.q('SELECT vpn_id, user_id FROM grants ORDER BY vpn_id, user_id')).rows.map((r) => ({ vpnId: r.vpn_id as string, userId: r.user_id as string }));
  }
  async setJoinedAs(deviceId: string, userId: string, at: number) {
    await this.q('INSERT INTO joined_as (device_id, user_id, at) VALUES ($1, $2, $3) ON CONFLICT (device_id) DO UPDATE SET user_id = excluded.user_id, at = excluded.at', [deviceId, userId, at]);
  }
  async clearJoinedAs(deviceId: string) {
    await this.q('DELETE FROM joined_as WHERE device_id = $1', [deviceId]);
  }
  async joinedAs() {
    return new Map((await this.q('SELECT device_id, user_id FROM joined_as')).rows.map((r) => [r.device_id as string, r.user_id as string]));
  }

  async putMember(m: MemberRow) {
    await this.q(
      `WITH moot AS (DELETE FROM owed_notices WHERE vpn_id = $1 AND member_id = $2)
       INSERT INTO members VALUES ($1, $2, $3, $4, $5) ON CONFLICT (vpn_id, device_id) DO UPDATE SET user_id = excluded.user_id, key_id = excluded.key_id, network_id = excluded.network_id`,
      [m.vpnId, m.deviceId, m.userId, m.keyId, m.networkId],
    );
  }
  async removeMember(vpnId: string, deviceId: string, notice?: OwedNotice['reason']) {
    return this.tx(async (q) => {
      if (notice) await q(OWED.notice('m.vpn_id = $3 AND m.device_id = $4'), [notice, Date.now(), vpnId, deviceId]);
      if (((await q('DELETE FROM members WHERE vpn_id = $1 AND device_id = $2', [vpnId, deviceId])).rowCount ?? 0) === 0) return false;
      await q(`${OWED.rekey} AND id = $2`, [Date.now(), vpnId]);
      return true;
    });
  }
  async owedNotices() {
    return (await this.q('SELECT * FROM owed_notices ORDER BY since, vpn_id, member_id')).rows.map(owedNoticeRow);
  }
  async noticeDone(n: Pick<OwedNotice, 'vpnId' | 'memberId' | 'since'>) {
    await this.q('DELETE FROM owed_notices WHERE vpn_id = $1 AND member_id = $2 AND since = $3', [n.vpnId, n.memberId, n.since]);
  }
  async members(vpnId: string) {
    return (await this.q('SELECT * FROM members WHERE vpn_id = $1 ORDER BY device_id', [vpnId])).rows.map(memberRow);
  }
  async placedMembers() {
    return placedMembers((await this.pool.query({ text: PLACED_MEMBERS_SQL, rowMode: 'array' })).rows);
  }
  async keyHolders(vpnId: string, behind?: number) {
    const q = behind === undefined ? { text: KEY_HOLDERS.holders, values: [vpnId] } : { text: KEY_HOLDERS.lagging, values: [vpnId, behind] };
    return keyHolders((await this.pool.query({ ...q, rowMode: 'array' })).rows);
  }
  async raiseKeyId(vpnId: string, deviceId: string, epoch: number) {
    return ((await this.q(KEY_HOLDERS.raise, [epoch, vpnId, deviceId, epoch])).rowCount ?? 0) > 0;
  }
  membershipsOf(deviceId: string) {
    return this.memberships.call(deviceId, null);
  }

  async putSessionKey(k: SessionKeyRow) {
    await this.insert('INSERT INTO session_keys VALUES ($1, $2, $3, $4)', `key ${k.vpnId}#${k.epoch}`, [k.vpnId, k.epoch, Buffer.from(k.key), k.createdAt]);
  }
  async currentSessionKey(vpnId: string) {
    const r = (await this.q('SELECT * FROM session_keys WHERE vpn_id = $1 ORDER BY epoch DESC LIMIT 1', [vpnId])).rows[0];
    return r ? sessionKeyRow(r) : undefined;
  }

  async putConfig(c: ConfigRow) {
    await this.q('INSERT INTO config VALUES ($1, $2) ON CONFLICT (device_id) DO UPDATE SET body = excluded.body', [c.deviceId, JSON.stringify(c.body)]);
  }
  async getConfig(deviceId: string) {
    const r = (await this.q('SELECT * FROM config WHERE device_id = $1', [deviceId])).rows[0];
    return r ? { deviceId: r.device_id as string, body: JSON.parse(r.body as string) as Record<string, unknown> } : undefined;
  }

  channels(owner: 'config' | 'keys'): ChannelBook {
    return {
      get: (peer) => this.channelGets[owner].call(peer, null),
      set: (peer, k, seq) => this.setChannel(this.q.bind(this), owner, peer, k, seq),
      setIfAbsent: async (peer, k) => {
        await this.q('INSERT INTO channels (owner, peer, send, recv) VALUES ($1, $2, $3, $4) ON CONFLICT (owner, peer) DO NOTHING', [owner, peer, Buffer.from(k.send), Buffer.from(k.recv)]);
        const r = (await this.q('SELECT send, recv FROM channels WHERE owner = $1 AND peer = $2', [owner, peer])).rows[0];
        return { send: u8(r.send as Buffer), recv: u8(r.recv as Buffer) };
      },
      delete: async (peer) => void (await this.q('DELETE FROM channels WHERE owner = $1 AND peer = $2', [owner, peer])),
    };
  }

  /**
   * With a seq: compare-and-set, the highest delivery's channel wins (one
   * statement, so two instances acknowledged at once agree). Whether kept.
   */
  private async setChannel(q: (sql: string, args?: unknown[]) => Promise<pg.QueryResult>, owner: 'config' | 'keys', peer: string, k: ChannelKeys, seq?: number): Promise<boolean> {
    const sql = `INSERT INTO channels (owner, peer, send, recv, seq) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner, peer) DO UPDATE SET send = excluded.send, recv = excluded.recv, seq = excluded.seq${seq === undefined ? '' : ' WHERE channels.seq < excluded.seq'}`;
    return ((await q(sql, [owner, peer, Buffer.from(k.send), Buffer.from(k.recv), seq ?? 0])).rowCount ?? 0) > 0;
  }
  async replaceChannel(owner: 'config' | 'keys', peer: string, keys: ChannelKeys, o: { seq?: number; replacedTag?: string }) {
    if (o.replacedTag === undefined) return this.setChannel(this.q.bind(this), owner, peer, keys, o.seq);
    return this.tx(async (q) => {
      const kept = await this.setChannel(q, owner, peer, keys, o.seq);
      if (kept) await q(WINDOWS.oneChannel, [channelWindowPrefix(owner, peer) + o.replacedTag]);
      return kept;
    });
  }
  async sweepSeqWindows(o: { idleBefore: number; connectEras: number }) {
    return this.tx(async (q) => ({
      idle: (await q(WINDOWS.idleEras, [o.idleBefore])).rowCount ?? 0,
      connect: (await q(WINDOWS.connectEras, [o.connectEras])).rowCount ?? 0,
    }));
  }

  async setCommunicating(deviceId: string, communicating: boolean, at: number, missed = 0) {
    await this.q('INSERT INTO liveness (device_id, communicating, changed_at, missed) VALUES ($1, $2, $3, $4) ON CONFLICT (device_id) DO UPDATE SET communicating = excluded.communicating, changed_at = excluded.changed_at, missed = excluded.missed', [deviceId, communicating ? 1 : 0, at, missed]);
  }
  async missedPolls() {
    return new Map((await this.q('SELECT device_id, missed FROM liveness WHERE missed > 0')).rows.map((r) => [r.device_id as string, Number(r.missed)]));
  }
  async notCommunicating() {
    return new Set((await this.q('SELECT device_id FROM liveness WHERE communicating = 0')).rows.map((r) => r.device_id as string));
  }

  async setPresence(deviceId: string, online: boolean, at: number, broker: string | null = null) {
    const r = await this.q('INSERT INTO presence (device_id, online, changed_at, broker) SELECT $1::text, $2::integer, $3::bigint, $4::text WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1) ON CONFLICT (device_id) DO UPDATE SET online = excluded.online, changed_at = excluded.changed_at, broker = excluded.broker', [deviceId, online ? 1 : 0, at, broker]);
    return (r.rowCount ?? 0) > 0;
  }
  async presentOn(broker: string) {
    return new Set((await this.q('SELECT device_id FROM presence WHERE broker = $1', [broker])).rows.map((r) => r.device_id as string));
  }
  async presence() {
    return presenceMap((await this.q('SELECT * FROM presence')).rows);
  }

  async noteAuth(deviceId: string, at: number, op: string, user: string | null = null) {
    await this.q(HISTORY.auth, [deviceId, at, op, user]);
  }
  async noteRefusal(deviceId: string, r: { at: number; code: string; reason: string; user?: string | null }) {
    await this.q(HISTORY.refusal, [deviceId, r.at, r.code, r.reason, r.user ?? null]);
  }
  async noteEviction(deviceId: string, at: number, from: string[], why: string) {
    await this.q(HISTORY.eviction, [deviceId, at, from.join(','), why]);
  }
  async deviceHistory(deviceId: string) {
    return historyRow((await this.q(HISTORY.read, [deviceId])).rows[0] as Record<string, unknown> | undefined);
  }

  async audit(a: AuditRow) {
    await this.q('INSERT INTO audit (at, actor, op, detail) VALUES ($1, $2, $3, $4)', [a.at, a.actor, a.op, a.detail]);
  }
  async auditLog(limit: number) {
    return (await this.q('SELECT * FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT $1) AS newest ORDER BY seq', [limit])).rows.map(auditRow);
  }

  async putNetworkInfo(n: NetworkInfoRow) {
    await this.q(
      'INSERT INTO network_info VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device_id) DO UPDATE SET address = excluded.address, relay_id = excluded.relay_id, relay_port = excluded.relay_port, updated_at = excluded.updated_at',
      [n.deviceId, n.address, n.relayId, n.relayPort, n.updatedAt],
    );
  }
  async allNetworkInfo() {
    return new Map((await this.q('SELECT * FROM network_info')).rows.map((r) => [r.device_id as string, networkInfoRow(r)]));
  }
  getNetworkInfo(deviceId: string) {
    return this.networkInfos.call(deviceId, null);
  }

  lease(name: string, o?: LeaseOptions): Lease {
    return new PgAdvisoryLease(this.connectionString, [`kagi:${this.schema}`, name], name, o);
  }

  async durable() {} // a commit has returned durable (synchronous_commit on)

  async close() {
    await this.pool.end();
  }
}

/** BEGIN … COMMIT on one pooled connection; ROLLBACK if `fn` throws. */
async function transaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}

/** Has `kagi up` or `kagi init` made kagi's tables in this schema? */
async function hasTables(pool: pg.Pool, schema: string): Promise<boolean> {
  const r = await pool.query('SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2', [schema, 'schema_migrations']);
  return r.rowCount !== null && r.rowCount > 0;
}

function migrate(pool: pg.Pool, schema: string): Promise<void> {
  return transaction(pool, async (c) => {
    // Instances starting together: one migrates, the others wait and find it done.
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
    const done = new Set((await c.query('SELECT version FROM schema_migrations')).rows.map((r) => Number(r.version)));
    for (const [i, sql] of MIGRATIONS.entries()) {
      if (done.has(i + 1)) continue;
      await c.query(sql);
      await c.query('INSERT INTO schema_migrations VALUES ($1, $2)', [i + 1, Date.now()]);
    }
  });
}
