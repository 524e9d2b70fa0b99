/**
 * The servers' tables (patent 1d, 1e, 1f, 2c, 3b) behind one interface, so
 * SQLite (default, one node) and PostgreSQL (several nodes) both fit. Every
 * method is async even where SQLite is synchronous.
 */
import type { NumberStore } from '../../protocol/store.js';
import type { ChannelBook, ChannelKeys } from '../../protocol/channel.js';
import type { Lease, LeaseOptions } from './lease.js';

/** `admin`: an operator's identity for the remote admin API (kagi admin add), never a device in a VPN. */
export type DeviceKind = 'terminal' | 'relay' | 'plaintext' | 'external' | 'service' | 'admin';
export type VpnProtocol = 'tcp' | 'udp';

/** 2c: a device, by id, with its MAC and static public key. */
export interface DeviceRow {
  id: string;
  mac: string;
  publicKey: Uint8Array;
  kind: DeviceKind;
  revoked: boolean;
  /** A plaintext terminal is bound to one relay port (DESIGN §7). */
  relayId: string | null;
  relayPort: string | null;
}

/** 2c: a user with an scrypt password hash. */
export interface UserRow {
  id: string;
  /** "scrypt$N$r$p$salt$hash" (hex). */
  passwordHash: string;
}

/** 1e per VPN: priority, bandwidth, protocol/port, flag, total rate. */
export interface VpnRow {
  id: string;
  protocol: VpnProtocol;
  port: number;
  priority: number;
  maxBandwidth: number; // bits/s, 0 = unlimited
  /** 1 while the bandwidth plan cuts the VPN, else 0. */
  flag: number;
  /** bits/s the bandwidth plan gives the VPN (the patent's firewall bandwidth total). */
  totalRate: number;
  /** Periodic rekey period (ms); 0 = the control plane's default. */
  rekeyPeriodMs: number;
  /** When an operator asked for a rekey (`kagi vpn rekey`), 0 = not asked. */
  rekeyRequestedAt: number;
}

/** 1e per user and VPN: the active membership of one device. */
export interface MemberRow {
  vpnId: string;
  deviceId: string;
  userId: string;
  keyId: number; // epoch of the session key the member holds
  networkId: string;
}

/** A member as a reconcile sees it: the device and where it is. */
/** A member, its key id, and where its keys go: itself, or its relay's port. */
export interface KeyHolderRow {
  deviceId: string;
  keyId: number;
  relayId: string | null;
  relayPort: string | null;
}

export interface PlacedMember {
  deviceId: string;
  address: string | null;
  /** The relay it sits behind, if any. */
  via: string | null;
}

/** 3b: one epoch of a VPN's session key. */
export interface SessionKeyRow {
  vpnId: string;
  epoch: number;
  key: Uint8Array;
  createdAt: number;
}

/** 1d: a device's config as sent to it. */
export interface ConfigRow {
  deviceId: string;
  body: Record<string, unknown>;
}

/** 1f: where a device is (address, or relay and port). */
export interface NetworkInfoRow {
  deviceId: string;
  address: string | null;
  relayId: string | null;
  relayPort: string | null;
  updatedAt: number;
}

/** An S405 notice owed to the holder of a member's keys: the member is out of the VPN. */
export interface OwedNotice {
  vpnId: string;
  memberId: string;
  /** The member itself, or the relay that holds its keys. */
  holderId: string;
  reason: 'evicted' | 'revoked' | 'deleted';
  since: number;
}

/** A resumption ticket (protocol/ticket.ts) as the auth server keeps it: a verifier, never the secret. */
export interface TicketRow {
  id: string;
  deviceId: string;
  userId: string;
  /** SHA-256 of the ticket secret. */
  verifier: Uint8Array;
  issuedAt: number;
  expiresAt: number;
  /** When it was presented and rotated; null while live. */
  usedAt: number | null;
  /** The ticket it was rotated into. */
  successor: string | null;
}

/**
 * What happened to a device last (issue 24, `kagi why`): the last
 * authentication the auth server accepted, the last refusal it gave for
 * the device, the last time the config server evicted it. Times are ms.
 */
export interface DeviceHistory {
  /** op: `config` (its config request) or `join` (its join, with password or ticket); user: who it joined as. */
  auth: { at: number; op: string; user: string | null } | null;
  /** code: the refusal code (docs/protocol.md); user: who it tried to join as, if a join. */
  refusal: { at: number; code: string; reason: string; user: string | null } | null;
  /** from: the VPNs it was evicted from. */
  eviction: { at: number; from: string[]; why: string } | null;
}

export interface Store {
  readonly numbers: NumberStore;

  addDevice(d: Omit<DeviceRow, 'revoked' | 'relayId' | 'relayPort'> & { relayId?: string; relayPort?: string }): Promise<void>;
  getDevice(id: string): Promise<DeviceRow | undefined>;
  listDevices(): Promise<DeviceRow[]>;
  /** Ids of the devices registered with this MAC (lower case), revoked ones too. */
  devicesWithMac(mac: string): Promise<string[]>;
  /** Revoke a device for good: marked revoked, out of every VPN, its channels gone; false if no such device. */
  revokeDevice(id: string): Promise<boolean>;
  /** Ids of revoked devices (read every reconcile: not a scan of every device). */
  revokedDevices(): Promise<string[]>;

  addUser(u: UserRow): Promise<void>;
  getUser(id: string): Promise<UserRow | undefined>;
  /** Change a user's password and drop the user's tickets, in one transaction; false if no such user. */
  setPassword(userId: string, passwordHash: string): Promise<boolean>;

  /** Resumption tickets (issue 21). revokeDevice drops a device's in its transaction. */
  getTicket(id: string): Promise<TicketRow | undefined>;
  /** A join with the password: the (device, user) family starts again with this one ticket. */
  startTicketFamily(t: TicketRow): Promise<void>;
  /**
   * Retire `oldId` if it is still live and issue `next` in its family, in
   * one transaction (expired tickets of the family go with it); false if
   * `oldId` was not live (someone presented it first).
   */
  rotateTicket(oldId: string, next: TicketRow, at: number): Promise<boolean>;
  /** Drop the tickets of a (device, user) family, or of a device, or of a user; how many went. */
  dropTickets(who: { deviceId?: string; userId?: string }): Promise<number>;
  /** Per device with tickets: whether one is live at `now`, and when it last presented one. */
  ticketSummary(now: number): Promise<Map<string, { live: boolean; lastUsedAt: number | null }>>;

  addVpn(v: Omit<VpnRow, 'rekeyPeriodMs' | 'rekeyRequestedAt'> & Partial<Pick<VpnRow, 'rekeyPeriodMs'>>): Promise<void>;
  /** Change a VPN's table row (kagi vpn set, the bandwidth plan); false if no such VPN. */
  updateVpn(id: string, patch: Partial<Pick<VpnRow, 'priority' | 'maxBandwidth' | 'rekeyPeriodMs' | 'flag' | 'totalRate'>>): Promise<boolean>;
  /** Ask for a rekey of a VPN (at = now), or clear the request (at = 0); false if no such VPN. */
  setRekeyRequest(vpnId: string, at: number): Promise<boolean>;
  /** Delete a VPN with its grants, memberships and keys; false if absent. */
  deleteVpn(id: string): Promise<boolean>;
  getVpn(id: string): Promise<VpnRow | undefined>;
  listVpns(): Promise<VpnRow[]>;

  grant(vpnId: string, userId: string): Promise<void>;
  /** Withdraw a grant and the user's memberships of the VPN; false if none. */
  revoke(vpnId: string, userId: string): Promise<boolean>;
  grantsOf(userId: string): Promise<string[]>;
  /** Every grant, in one read. */
  listGrants(): Promise<{ vpnId: string; userId: string }[]>;
  /** A device (one that holds its own keys) joined as this user: the latest wins. */
  setJoinedAs(deviceId: string, userId: string, at: number): Promise<void>;
  /** The device left on its own (it is shutting down): no grant is owed to it until it joins again. */
  clearJoinedAs(deviceId: string): Promise<void>;
  /** Who each device last joined as. */
  joinedAs(): Promise<Map<string, string>>;

  /**
   * Insert or replace the membership of (vpn, device). A notice still owed
   * for the member's earlier removal goes in the same write: it is back,
   * and "you are out" would now be false (a device evicted in a power cut
   * that re-joined was told so after its join, and dropped its new keys).
   */
  putMember(m: MemberRow): Promise<void>;
  members(vpnId: string): Promise<MemberRow[]>;
  /**
   * Every VPN's members with where each is (address, relay), by VPN, in
   * device order: what a reconcile needs, in one query (a reconcile of
   * 10,000 members read them VPN by VPN beside every network info row).
   */
  placedMembers(): Promise<Map<string, PlacedMember[]>>;
  /**
   * A VPN's members with their key ids and relay ports, in device order:
   * a rekey's one read (it read each member's network info and memberships
   * one by one, about six reads a member). With `behind`, only those whose
   * key id is above 0 and below it and that are not marked as not
   * communicating: the members convergence pushes to.
   */
  keyHolders(vpnId: string, behind?: number): Promise<KeyHolderRow[]>;
  /**
   * A member acknowledged `epoch` of a VPN: its key id moves up to it, never
   * down, in one write (no read first). False when nothing moved (not a
   * member, or already there). SQLite batches these with the other writes.
   */
  raiseKeyId(vpnId: string, deviceId: string, epoch: number): Promise<boolean>;
  /**
   * Remove one membership (leave, eviction); false if it was not there.
   * With `notice` (evicted, revoked; not a holder's own leave) its key
   * holder is owed an S405 notice (owedNotices), in the same transaction;
   * revoke, revokeDevice and deleteVpn owe theirs the same way.
   * Every removal (this, revoke, revokeDevice) marks its VPN as owing a
   * rekey (rekeyRequestedAt) in the same transaction: the key server's
   * lease holder performs owed rekeys on its tick, so a removal made while
   * no control plane runs, or lost to a crash, is still rekeyed.
   */
  removeMember(vpnId: string, deviceId: string, notice?: OwedNotice['reason']): Promise<boolean>;
  /** S405 notices not yet delivered, oldest first. */
  owedNotices(): Promise<OwedNotice[]>;
  /** A notice was delivered (or has nobody to go to): forget it, unless a newer one replaced it. */
  noticeDone(n: Pick<OwedNotice, 'vpnId' | 'memberId' | 'since'>): Promise<void>;
  membershipsOf(deviceId: string): Promise<MemberRow[]>;

  putSessionKey(k: SessionKeyRow): Promise<void>;
  currentSessionKey(vpnId: string): Promise<SessionKeyRow | undefined>;

  putConfig(c: ConfigRow): Promise<void>;
  getConfig(deviceId: string): Promise<ConfigRow | undefined>;

  /**
   * A service's channel keys per device (config: from the device's
   * authentication; keys: chosen per key holder). Secret, like session keys.
   */
  channels(owner: 'config' | 'keys'): ChannelBook;
  /**
   * Keep `keys` as `owner`'s channel with `peer` (ChannelBook.set:
   * compare-and-set on `seq` where given) and, if kept, delete the replay
   * window of the channel it replaced, named by its tag (`replacedTag`,
   * channel.ts channelTag): nothing on that channel opens any more. One
   * write, both or neither (one commit where there were two in turn); the
   * window is one row by key, so a join costs the same with 10 devices or
   * 10,000. Revoking a device deletes all of its channel windows. True when
   * kept.
   */
  replaceChannel(owner: 'config' | 'keys', peer: string, keys: ChannelKeys, o: { seq?: number; replacedTag?: string }): Promise<boolean>;
  /**
   * Sweep replay windows (windows.ts): sender-era windows last claimed
   * before `idleBefore` (s), and CONNECT era windows beyond the newest
   * `connectEras` per client. Era 0 windows stay. Rows deleted, by kind.
   */
  sweepSeqWindows(o: { idleBefore: number; connectEras: number }): Promise<{ idle: number; connect: number }>;

  /**
   * Embodiment 4: whether a member answers polls (the key server rekeys
   * only those), and how many polls in a row it has missed (0 when it
   * answers), so a new lease holder resumes the count.
   */
  setCommunicating(deviceId: string, communicating: boolean, at: number, missed?: number): Promise<void>;
  /** Devices marked not communicating (every other member is). */
  notCommunicating(): Promise<Set<string>>;
  /** Members with missed polls on record, and how many. */
  missedPolls(): Promise<Map<string, number>>;

  /**
   * A device's MQTT presence (its retained state topic: online, or offline
   * by will or on stopping), and the broker (URL) it was heard on. False,
   * and nothing recorded, when no device has this id (retained leftovers
   * on a shared broker): the caller needs no read of its own to know.
   */
  setPresence(deviceId: string, online: boolean, at: number, broker?: string | null): Promise<boolean>;
  presence(): Promise<Map<string, { online: boolean; changedAt: number }>>;
  /** Devices whose presence was last heard on this broker. */
  presentOn(broker: string): Promise<Set<string>>;

  /** Device history (kagi why): the auth server accepted an authentication of the device. */
  noteAuth(deviceId: string, at: number, op: string, user?: string | null): Promise<void>;
  /** The auth (or config) server refused a request of, or for, the device. */
  noteRefusal(deviceId: string, r: { at: number; code: string; reason: string; user?: string | null }): Promise<void>;
  /** The config server evicted the member from these VPNs. */
  noteEviction(deviceId: string, at: number, from: string[], why: string): Promise<void>;
  /** What the device went through last; nulls where nothing is recorded. */
  deviceHistory(deviceId: string): Promise<DeviceHistory>;

  /** Record an operator's change; the newest `limit` entries, oldest first. */
  audit(row: AuditRow): Promise<void>;
  auditLog(limit: number): Promise<AuditRow[]>;

  putNetworkInfo(n: NetworkInfoRow): Promise<void>;
  getNetworkInfo(deviceId: string): Promise<NetworkInfoRow | undefined>;
  /** Every device's network info in one read (a reconcile or poll round of 10,000 members is one query, not 10,000). */
  allNetworkInfo(): Promise<Map<string, NetworkInfoRow>>;

  /**
   * Password attempts (servers/auth/throttle.ts), per key (`user:ID`,
   * `device:ID`). Atomic: if any key of `check` is blocked
   * (blocked_until > now) nothing changes and the latest blocked_until
   * comes back; else each key of `count` gets one more failure and is
   * blocked until now + delayAfter(its failures), and 0 comes back. The
   * auth server counts a device's attempt when it is claimed (a burst is
   * counted whole) and a user's only when it failed (with check = []), so
   * honest joins of one user at once never block each other.
   */
  claimPasswordAttempt(check: string[], count: string[], now: number, delayAfter: (failures: number) => number): Promise<number>;
  /** A success: these keys start again from no failures. */
  clearPasswordFailures(keys: string[]): Promise<void>;
  /** Forget keys blocked until before `before` (long quiet): how many. */
  prunePasswordFailures(before: number): Promise<number>;
  /** Failures on record per key (status, tests). */
  passwordFailures(key: string): Promise<{ failures: number; blockedUntil: number } | undefined>;

  /** The lease of a once-only duty (lease.ts): always held on a store one process owns. */
  lease(name: string, o?: LeaseOptions): Lease;

  /**
   * Resolves once every write that resolved before the call is on disk
   * (decision 140): a write resolves when it has committed, visible to
   * every reader, and the services wait on this before anything leaves
   * them (service-host.ts, the broker's CONNACK). PostgreSQL's commits are
   * durable when they return: at once there.
   */
  durable(): Promise<void>;

  close(): Promise<void>;
}

/** One change to the tables by an operator: who, what, when (never a secret). */
export interface AuditRow {
  at: number;
  /** local:USER@HOST for the CLI on a data dir; admin:ID for a remote admin. */
  actor: string;
  /** e.g. vpn.add, device.revoke */
  op: string;
  /** JSON of the arguments that are not secret. */
  detail: string;
}

/** Thrown for a row that already exists (admin commands report it). */
export class ConflictError extends Error {
  override readonly name = 'ConflictError';
}
