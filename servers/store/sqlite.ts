/**
 * SQLite store (better-sqlite3, WAL) in a data directory, with numbered
 * migrations recorded in schema_migrations.
 */
import Database from 'better-sqlite3';
import { closeSync, openSync } from 'node:fs';
import { DB_FILE, makeDataDir } from '../data-dir.js';
import { PRIVATE_FILE_MODE } from '../private-file.js';
import { join } from 'node:path';
import type { NumberStore } from '../../protocol/store.js';
import { slideWindow, type SeqWindow } from '../../protocol/replay.js';
import type { ChannelBook, ChannelKeys } from '../../protocol/channel.js';
import { WriteBatch } from './write-batch.js';
import { walSync } from './wal-sync.js';
import { SoleLease, type Lease } from './lease.js';
import { migrations } from './migrations.js';
import { owedSql } from './owed.js';
import { historyRow, historySql } from './history-sql.js';
import { ticketInsertArgs, ticketRow, ticketSql, ticketSummaryMap } from './tickets-sql.js';
import { ConflictError, type OwedNotice, type AuditRow, type ConfigRow, type MemberRow, type NetworkInfoRow, type SessionKeyRow, type Store, type TicketRow, type UserRow } from './store.js';
import { channelWindowPrefix, nowSeconds, windowsSql } from './windows.js';
import { auditRow, owedNoticeRow, deviceRow, keyHolders, keyHolderSql, memberRow, networkInfoRow, placedMembers, PLACED_MEMBERS_SQL, presenceMap, sessionKeyRow, u8, vpnRow, VPN_COLUMNS } from './rows.js';

const MIGRATIONS = migrations('sqlite');

const OWED = owedSql(() => '?');
const HISTORY = historySql(() => '?');
const KEY_HOLDERS = keyHolderSql(() => '?');
const TICKETS = ticketSql(() => '?');
// Named parameters: a placeholder may appear more than once.
const WINDOWS = windowsSql((i) => `@p${i}`, (i) => `@p${i}`);

function migrate(db: Database.Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  const done = new Set((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
  MIGRATIONS.forEach((sql, i) => {
    if (done.has(i + 1)) return;
    db.transaction(() => {
      db.exec(sql);
      db.prepare('INSERT INTO schema_migrations VALUES (?, ?)').run(i + 1, Date.now());
    })();
  });
}

function isConflict(e: unknown): boolean {
  return (e as { code?: string })?.code?.startsWith('SQLITE_CONSTRAINT') ?? false;
}

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly batch: WriteBatch;
  readonly numbers: NumberStore;
  /**
   * Replay windows claimed in this process whose write is not committed
   * yet (the table's rows, read through). A window leaves the map once its
   * write lands, so an idle device costs no memory here (decision 99).
   */
  private readonly windows = new Map<string, SeqWindow>();

  constructor(dataDir: string) {
    makeDataDir(dataDir);
    // Made 0600 before SQLite opens it: SQLite gives its -wal and -shm files
    // the database file's mode, and the tables hold password hashes and keys.
    const file = join(dataDir, DB_FILE);
    closeSync(openSync(file, 'a', PRIVATE_FILE_MODE));
    this.db = new Database(file);
    // A file system without shared memory for the WAL index keeps the
    // rollback journal: then there is no WAL to sync apart, and the group
    // commit commits at FULL like everything else.
    const wal = this.db.pragma('journal_mode = WAL', { simple: true }) === 'wal';
    // Every commit on disk before it returns, the group commit's excepted
    // (it syncs off the event loop before its writes resolve, decision
    // 135). Said here, not left to the default: better-sqlite3 is built
    // with SQLITE_DEFAULT_WAL_SYNCHRONOUS=1, so a connection in WAL mode
    // ran at NORMAL and no commit was synced.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    migrate(this.db);
    this.batch = new WriteBatch(this.db, wal ? walSync(file, dataDir) : undefined);
    const get = this.stmt('SELECT value FROM numbers WHERE key = ?');
    const set = this.stmt('INSERT INTO numbers VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
    const getWindow = this.stmt('SELECT top, bits FROM seq_windows WHERE key = ?');
    const setWindow = this.stmt('INSERT INTO seq_windows (key, top, bits, used_at) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET top = excluded.top, bits = excluded.bits, used_at = MAX(seq_windows.used_at, excluded.used_at)');
    // One process owns the file: windows are decided in memory (read
    // through from the table), so claims in one turn see each other before
    // their group commit lands. After it lands the table has the window: the
    // last claim of a key drops it from memory (a later claim reads the row).
    // A failed commit leaves the window in memory, as it was before.
    const windows = this.windows;
    // One savepoint of the group commit (all or none), on disk before it
    // resolves: a send counter's reservation is before its first number is
    // used (decision 140: a group commit alone does not wait for a sync).
    const reserve = (entries: [string, number][]) => this.batch.run(() => entries.forEach(([k, v]) => set.run(k, v))).then(() => this.batch.durable());
    this.numbers = {
      get: async (k) => (get.get(k) as { value: number } | undefined)?.value,
      set: (k, v) => reserve([[k, v]]),
      setMany: reserve,
      claim: async (k, seq, at = nowSeconds()) => {
        const w = windows.get(k) ?? (getWindow.get(k) as SeqWindow | undefined);
        const next = slideWindow(w, seq);
        if (!next) return false;
        windows.set(k, next);
        await this.batch.run(() => void setWindow.run(k, next.top, next.bits, at));
        if (windows.get(k) === next) windows.delete(k);
        return true;
      },
    };
  }

  private readonly statements = new Map<string, Database.Statement>();

  /** Prepared once per SQL text: preparing is most of a small query's cost. */
  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) this.statements.set(sql, (st = this.db.prepare(sql)));
    return st;
  }

  /** One statement in the next group commit (write-batch.ts); its result once it is durable. */
  private write(sql: string, ...args: unknown[]): Promise<Database.RunResult> {
    return this.batch.run(() => this.stmt(sql).run(...args));
  }

  private insert(sql: string, what: string, ...args: unknown[]): void {
    try {
      this.stmt(sql).run(...args);
    } catch (e) {
      if (isConflict(e)) throw new ConflictError(`${what} already exists or refers to something missing`);
      throw e;
    }
  }

  async addDevice(d: Parameters<Store['addDevice']>[0]) {
    this.insert('INSERT INTO devices (id, mac, public_key, kind, relay_id, relay_port) VALUES (?, ?, ?, ?, ?, ?)', `device ${d.id}`, d.id, d.mac, Buffer.from(d.publicKey), d.kind, d.relayId ?? null, d.relayPort ?? null);
  }
  async getDevice(id: string) {
    const r = this.stmt('SELECT * FROM devices WHERE id = ?').get(id);
    return r ? deviceRow(r) : undefined;
  }
  async devicesWithMac(mac: string) {
    return (this.stmt('SELECT id FROM devices WHERE mac = ? ORDER BY id').all(mac) as { id: string }[]).map((r) => r.id);
  }
  async listDevices() {
    return this.stmt('SELECT * FROM devices ORDER BY id').all().map(deviceRow);
  }

  async revokedDevices() {
    return (this.stmt('SELECT id FROM devices WHERE revoked = 1 ORDER BY id').all() as { id: string }[]).map((r) => r.id);
  }

  async revokeDevice(id: string) {
    return this.db.transaction(() => {
      if (this.stmt('UPDATE devices SET revoked = 1 WHERE id = ?').run(id).changes === 0) return false;
      this.stmt(`${OWED.rekey} AND id IN (SELECT vpn_id FROM members WHERE device_id = ?)`).run(Date.now(), id);
      this.stmt(OWED.notice('m.device_id = ?')).run('revoked', Date.now(), id);
      this.stmt('DELETE FROM members WHERE device_id = ?').run(id);
      this.stmt('DELETE FROM channels WHERE peer = ?').run(id);
      this.stmt(TICKETS.dropDevice).run(id);
      for (const r of this.stmt(`${WINDOWS.ofChannelsOf} RETURNING key`).all({ p1: id }) as { key: string }[]) this.windows.delete(r.key);
      return true;
    })();
  }

  async setPassword(userId: string, passwordHash: string) {
    return this.db.transaction(() => {
      if (this.stmt('UPDATE users SET password_hash = ? WHERE id = ?').run(passwordHash, userId).changes === 0) return false;
      this.stmt(TICKETS.dropUser).run(userId);
      return true;
    })();
  }

  async getTicket(id: string) {
    const r = this.stmt(TICKETS.get).get(id);
    return r ? ticketRow(r) : undefined;
  }
  async startTicketFamily(t: TicketRow) {
    await this.batch.run(() => {
      this.stmt(TICKETS.dropFamily).run(t.deviceId, t.userId);
      this.stmt(TICKETS.insert).run(...ticketInsertArgs(t));
    });
  }
  async rotateTicket(oldId: string, next: TicketRow, at: number) {
    return this.batch.run(() => {
      if (this.stmt(TICKETS.retire).run(at, next.id, oldId).changes === 0) return false;
      this.stmt(TICKETS.dropExpired).run(next.deviceId, next.userId, at);
      this.stmt(TICKETS.insert).run(...ticketInsertArgs(next));
      return true;
    });
  }
  async dropTickets(who: { deviceId?: string; userId?: string }) {
    if (who.deviceId !== undefined && who.userId !== undefined) return this.stmt(TICKETS.dropFamily).run(who.deviceId, who.userId).changes;
    if (who.deviceId !== undefined) return this.stmt(TICKETS.dropDevice).run(who.deviceId).changes;
    if (who.userId !== undefined) return this.stmt(TICKETS.dropUser).run(who.userId).changes;
    return 0;
  }
  async ticketSummary(now: number) {
    return ticketSummaryMap(this.stmt(TICKETS.summary).all(now));
  }

  async addUser(u: UserRow) {
    this.insert('INSERT INTO users VALUES (?, ?)', `user ${u.id}`, u.id, u.passwordHash);
  }
  async getUser(id: string) {
    const r = this.stmt('SELECT * FROM users WHERE id = ?').get(id) as any;
    return r ? { id: r.id, passwordHash: r.password_hash } : undefined;
  }

  async claimPasswordAttempt(check: string[], count: string[], now: number, delayAfter: (failures: number) => number) {
    const read = (k: string) => this.stmt('SELECT failures, blocked_until FROM password_failures WHERE key = ?').get(k) as { failures: number; blocked_until: number } | undefined;
    // One process owns the file, and a write of the group commit runs
    // whole, in its savepoint, before the next: the read and the count are
    // atomic. Through the group commit: a first join's claim and its clear
    // were two commits of their own, each a sync on the event loop.
    return this.batch.run(() => {
      const blocked = Math.max(0, ...check.map((k) => read(k)?.blocked_until ?? 0).filter((b) => b > now));
      if (blocked > 0) return blocked;
      for (const k of new Set(count)) {
        const failures = (read(k)?.failures ?? 0) + 1;
        this.stmt('INSERT INTO password_failures VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET failures = excluded.failures, blocked_until = excluded.blocked_until').run(k, failures, now + delayAfter(failures));
      }
      return 0;
    });
  }
  async clearPasswordFailures(keys: string[]) {
    await this.batch.run(() => {
      for (const k of keys) this.stmt('DELETE FROM password_failures WHERE key = ?').run(k);
    });
  }
  async prunePasswordFailures(before: number) {
    return this.stmt('DELETE FROM password_failures WHERE blocked_until < ?').run(before).changes;
  }
  async passwordFailures(key: string) {
    const r = this.stmt('SELECT failures, blocked_until FROM password_failures WHERE key = ?').get(key) as { failures: number; blocked_until: number } | undefined;
    return r ? { failures: r.failures, blockedUntil: r.blocked_until } : undefined;
  }

  async addVpn(v: Parameters<Store['addVpn']>[0]) {
    this.insert(
      'INSERT INTO vpns (id, protocol, port, priority, max_bandwidth, flag, total_rate, rekey_period_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      `VPN ${v.id}`, v.id, v.protocol, v.port, v.priority, v.maxBandwidth, v.flag, v.totalRate, v.rekeyPeriodMs ?? 0,
    );
  }
  async updateVpn(id: string, patch: Parameters<Store['updateVpn']>[1]) {
    const set = (Object.keys(patch) as (keyof typeof VPN_COLUMNS)[]).filter((k) => patch[k] !== undefined);
    if (set.length === 0) return !!(await this.getVpn(id));
    return this.stmt(`UPDATE vpns SET ${set.map((k) => `${VPN_COLUMNS[k]} = ?`).join(', ')} WHERE id = ?`).run(...set.map((k) => patch[k]), id).changes > 0;
  }
  async setRekeyRequest(vpnId: string, at: number) {
    return this.stmt('UPDATE vpns SET rekey_requested_at = ? WHERE id = ?').run(at, vpnId).changes > 0;
  }
  async getVpn(id: string) {
    const r = this.stmt('SELECT * FROM vpns WHERE id = ?').get(id);
    return r ? vpnRow(r) : undefined;
  }
  async listVpns() {
    return this.stmt('SELECT * FROM vpns ORDER BY id').all().map(vpnRow);
  }

  async deleteVpn(id: string) {
    return this.db.transaction(() => {
      this.stmt(OWED.notice('m.vpn_id = ?')).run('deleted', Date.now(), id);
      for (const t of ['grants', 'members', 'session_keys']) this.stmt(`DELETE FROM ${t} WHERE vpn_id = ?`).run(id);
      return this.stmt('DELETE FROM vpns WHERE id = ?').run(id).changes > 0;
    })();
  }

  async grant(vpnId: string, userId: string) {
    this.insert('INSERT INTO grants VALUES (?, ?)', `grant of ${vpnId} to ${userId}`, vpnId, userId);
  }
  async revoke(vpnId: string, userId: string) {
    return this.db.transaction(() => {
      this.stmt(OWED.notice('m.vpn_id = ? AND m.user_id = ?')).run('revoked', Date.now(), vpnId, userId);
      const m = this.stmt('DELETE FROM members WHERE vpn_id = ? AND user_id = ?').run(vpnId, userId).changes;
      const g = this.stmt('DELETE FROM grants WHERE vpn_id = ? AND user_id = ?').run(vpnId, userId).changes;
      if (m > 0) this.stmt(`${OWED.rekey} AND id = ?`).run(Date.now(), vpnId);
      return m + g > 0;
    })();
  }

  async grantsOf(userId: string) {
    return (this.stmt('SELECT vpn_id FROM grants WHERE user_id = ? ORDER BY vpn_id').all(userId) as { vpn_id: string }[]).map((r) => r.vpn_id);
  }
  async listGrants() {
    return (this.stmt('SELECT vpn_id, user_id FROM grants ORDER BY vpn_id, user_id').all() as { vpn_id: string; user_id: string }[]).map((r) => ({ vpnId: r.vpn_id, userId: r.user_id }));
  }
  async setJoinedAs(deviceId: string, userId: string, at: number) {
    await this.write('INSERT INTO joined_as (device_id, user_id, at) VALUES (?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET user_id = excluded.user_id, at = excluded.at', deviceId, userId, at);
  }
  async clearJoinedAs(deviceId: string) {
    this.stmt('DELETE FROM joined_as WHERE device_id = ?').run(deviceId);
  }
  async joinedAs() {
    return new Map((this.stmt('SELECT device_id, user_id FROM joined_as').all() as { device_id: string; user_id: string }[]).map((r) => [r.device_id, r.user_id]));
  }

  putMember(m: MemberRow) {
    return this.batch.run(() => {
      this.stmt('DELETE FROM owed_notices WHERE vpn_id = ? AND member_id = ?').run(m.vpnId, m.deviceId);
      this.stmt('INSERT INTO members VALUES (?, ?, ?, ?, ?) ON CONFLICT(vpn_id, device_id) DO UPDATE SET user_id = excluded.user_id, key_id = excluded.key_id, network_id = excluded.network_id')
        .run(m.vpnId, m.deviceId, m.userId, m.keyId, m.networkId);
    });
  }
  async removeMember(vpnId: string, deviceId: string, notice?: OwedNotice['reason']) {
    return this.db.transaction(() => {
      if (notice) this.stmt(OWED.notice('m.vpn_id = ? AND m.device_id = ?')).run(notice, Date.now(), vpnId, deviceId);
      if (this.stmt('DELETE FROM members WHERE vpn_id = ? AND device_id = ?').run(vpnId, deviceId).changes === 0) return false;
      this.stmt(`${OWED.rekey} AND id = ?`).run(Date.now(), vpnId);
      return true;
    })();
  }
  async owedNotices() {
    return (this.stmt('SELECT * FROM owed_notices ORDER BY since, vpn_id, member_id').all() as Record<string, unknown>[]).map(owedNoticeRow);
  }
  async noticeDone(n: Pick<OwedNotice, 'vpnId' | 'memberId' | 'since'>) {
    this.stmt('DELETE FROM owed_notices WHERE vpn_id = ? AND member_id = ? AND since = ?').run(n.vpnId, n.memberId, n.since);
  }
  async members(vpnId: string) {
    return this.stmt('SELECT * FROM members WHERE vpn_id = ? ORDER BY device_id').all(vpnId).map(memberRow);
  }
  async placedMembers() {
    return placedMembers(this.stmt(PLACED_MEMBERS_SQL).raw().all() as unknown[][]);
  }
  async keyHolders(vpnId: string, behind?: number) {
    const rows = behind === undefined ? this.stmt(KEY_HOLDERS.holders).raw().all(vpnId) : this.stmt(KEY_HOLDERS.lagging).raw().all(vpnId, behind);
    return keyHolders(rows as unknown[][]);
  }
  async raiseKeyId(vpnId: string, deviceId: string, epoch: number) {
    return (await this.write(KEY_HOLDERS.raise, epoch, vpnId, deviceId, epoch)).changes > 0;
  }
  async membershipsOf(deviceId: string) {
    return this.stmt('SELECT * FROM members WHERE device_id = ? ORDER BY vpn_id').all(deviceId).map(memberRow);
  }

  async putSessionKey(k: SessionKeyRow) {
    this.insert('INSERT INTO session_keys VALUES (?, ?, ?, ?)', `key ${k.vpnId}#${k.epoch}`, k.vpnId, k.epoch, Buffer.from(k.key), k.createdAt);
  }
  async currentSessionKey(vpnId: string) {
    const r = this.stmt('SELECT * FROM session_keys WHERE vpn_id = ? ORDER BY epoch DESC LIMIT 1').get(vpnId) as any;
    return r ? sessionKeyRow(r) : undefined;
  }

  async putConfig(c: ConfigRow) {
    await this.write('INSERT INTO config VALUES (?, ?) ON CONFLICT(device_id) DO UPDATE SET body = excluded.body', c.deviceId, JSON.stringify(c.body));
  }
  async getConfig(deviceId: string) {
    const r = this.stmt('SELECT * FROM config WHERE device_id = ?').get(deviceId) as any;
    return r ? { deviceId: r.device_id, body: JSON.parse(r.body) } : undefined;
  }

  channels(owner: 'config' | 'keys'): ChannelBook {
    const db = { prepare: (sql: string) => this.stmt(sql) };
    return {
      get: async (peer) => {
        const r = db.prepare('SELECT send, recv FROM channels WHERE owner = ? AND peer = ?').get(owner, peer) as { send: Buffer; recv: Buffer } | undefined;
        return r ? { send: u8(r.send), recv: u8(r.recv) } : undefined;
      },
      set: (peer, k, seq) => this.batch.run(() => this.setChannel(owner, peer, k, seq)),
      setIfAbsent: (peer, k) => this.batch.run(() => {
        db.prepare('INSERT INTO channels (owner, peer, send, recv) VALUES (?, ?, ?, ?) ON CONFLICT(owner, peer) DO NOTHING').run(owner, peer, Buffer.from(k.send), Buffer.from(k.recv));
        const r = db.prepare('SELECT send, recv FROM channels WHERE owner = ? AND peer = ?').get(owner, peer) as { send: Buffer; recv: Buffer };
        return { send: u8(r.send), recv: u8(r.recv) };
      }),
      delete: (peer) => this.batch.run(() => void db.prepare('DELETE FROM channels WHERE owner = ? AND peer = ?').run(owner, peer)),
    };
  }

  /** With a seq: compare-and-set, the highest delivery's channel wins. Whether it was kept. */
  private setChannel(owner: 'config' | 'keys', peer: string, k: ChannelKeys, seq?: number): boolean {
    const sql = `INSERT INTO channels (owner, peer, send, recv, seq) VALUES (?, ?, ?, ?, ?) ON CONFLICT(owner, peer) DO UPDATE SET send = excluded.send, recv = excluded.recv, seq = excluded.seq${seq === undefined ? '' : ' WHERE channels.seq < excluded.seq'}`;
    return this.stmt(sql).run(owner, peer, Buffer.from(k.send), Buffer.from(k.recv), seq ?? 0).changes > 0;
  }
  async replaceChannel(owner: 'config' | 'keys', peer: string, keys: ChannelKeys, o: { seq?: number; replacedTag?: string }) {
    // One savepoint of the group commit: the channel and its old window's end together.
    return this.batch.run(() => {
      const kept = this.setChannel(owner, peer, keys, o.seq);
      if (kept && o.replacedTag !== undefined) this.forgetWindows(this.stmt(`${WINDOWS.oneChannel} RETURNING key`).all({ p1: channelWindowPrefix(owner, peer) + o.replacedTag }));
      return kept;
    });
  }
  async sweepSeqWindows(o: { idleBefore: number; connectEras: number }) {
    return this.db.transaction(() => ({
      idle: this.forgetWindows(this.stmt(`${WINDOWS.idleEras} RETURNING key`).all({ p1: o.idleBefore })),
      connect: this.forgetWindows(this.stmt(`${WINDOWS.connectEras} RETURNING key`).all({ p1: o.connectEras })),
    }))();
  }
  /** Deleted window rows leave this process's read-through copy too; how many. */
  private forgetWindows(rows: unknown[]): number {
    for (const r of rows as { key: string }[]) this.windows.delete(r.key);
    return rows.length;
  }

  async setCommunicating(deviceId: string, communicating: boolean, at: number, missed = 0) {
    await this.write('INSERT INTO liveness (device_id, communicating, changed_at, missed) VALUES (?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET communicating = excluded.communicating, changed_at = excluded.changed_at, missed = excluded.missed', deviceId, communicating ? 1 : 0, at, missed);
  }
  async missedPolls() {
    return new Map((this.stmt('SELECT device_id, missed FROM liveness WHERE missed > 0').all() as { device_id: string; missed: number }[]).map((r) => [r.device_id, Number(r.missed)]));
  }
  async notCommunicating() {
    return new Set((this.stmt('SELECT device_id FROM liveness WHERE communicating = 0').all() as { device_id: string }[]).map((r) => r.device_id));
  }

  async setPresence(deviceId: string, online: boolean, at: number, broker: string | null = null) {
    return (await this.write('INSERT INTO presence (device_id, online, changed_at, broker) SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?) ON CONFLICT(device_id) DO UPDATE SET online = excluded.online, changed_at = excluded.changed_at, broker = excluded.broker', deviceId, online ? 1 : 0, at, broker, deviceId)).changes > 0;
  }
  async presentOn(broker: string) {
    return new Set((this.stmt('SELECT device_id FROM presence WHERE broker = ?').all(broker) as { device_id: string }[]).map((r) => r.device_id));
  }
  async presence() {
    return presenceMap(this.stmt('SELECT * FROM presence').all());
  }

  async noteAuth(deviceId: string, at: number, op: string, user: string | null = null) {
    await this.write(HISTORY.auth, deviceId, at, op, user);
  }
  async noteRefusal(deviceId: string, r: { at: number; code: string; reason: string; user?: string | null }) {
    await this.write(HISTORY.refusal, deviceId, r.at, r.code, r.reason, r.user ?? null);
  }
  async noteEviction(deviceId: string, at: number, from: string[], why: string) {
    this.stmt(HISTORY.eviction).run(deviceId, at, from.join(','), why);
  }
  async deviceHistory(deviceId: string) {
    return historyRow(this.stmt(HISTORY.read).get(deviceId) as Record<string, unknown> | undefined);
  }

  async audit(a: AuditRow) {
    this.stmt('INSERT INTO audit (at, actor, op, detail) VALUES (?, ?, ?, ?)').run(a.at, a.actor, a.op, a.detail);
  }
  async auditLog(limit: number) {
    return this.stmt('SELECT * FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT ?) ORDER BY seq').all(limit).map(auditRow);
  }

  async putNetworkInfo(n: NetworkInfoRow) {
    await this.write('INSERT INTO network_info VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET address = excluded.address, relay_id = excluded.relay_id, relay_port = excluded.relay_port, updated_at = excluded.updated_at', n.deviceId, n.address, n.relayId, n.relayPort, n.updatedAt);
  }
  async allNetworkInfo() {
    return new Map(this.stmt('SELECT * FROM network_info').all().map((r) => [(r as { device_id: string }).device_id, networkInfoRow(r)]));
  }
  async getNetworkInfo(deviceId: string) {
    const r = this.stmt('SELECT * FROM network_info WHERE device_id = ?').get(deviceId) as any;
    return r ? networkInfoRow(r) : undefined;
  }

  lease(name: string): Lease {
    return new SoleLease(name);
  }

  durable(): Promise<void> {
    return this.batch.durable();
  }

  async close() {
    this.batch.drain();
    this.db.close();
  }
}
