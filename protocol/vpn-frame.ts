/**
 * VPN data frames (DESIGN §4):
 *   [version, vpnId, epoch, sender, target, bootSalt, counter, ciphertext]
 * `target` is the member the frame is for, or "all"; it is in the
 * authenticated header, and a receiver takes only frames for itself or for
 * all, so a broker cannot re-publish a frame sealed for B onto C's topic.
 * The key server hands every member a random 32-byte group key per VPN and
 * epoch. Each sender seals with its own key
 *   HKDF(ikm = group key, salt = sender id || boot salt, info = "kagi/v1 vpn")
 * and a 96-bit counter nonce I2OSP(counter, 12). The boot salt is fresh
 * random per start of the sender, so no two senders and no two boots of one
 * sender ever share a (key, nonce). Receivers keep a replay window per
 * sender, retire a sender's old boot salts (so frames of an earlier boot
 * cannot be replayed), and accept the previous epoch for a grace period
 * after a rekey. Any member holding the group key can claim any sender id:
 * group keys authenticate membership, not the individual member.
 */
import type { Crypto } from './crypto/backend.js';
import { AEAD_NONCE_LENGTH, AEAD_TAG_LENGTH } from './crypto/backend.js';
import { KagiError } from './errors.js';
import { ID_PATTERN, LIMITS } from './limits.js';
import { concat, equalCT, i2osp, toHex, utf8, wipe } from './bytes.js';
import { byteStringHead, decodeStrict, encodeHeader, expectArray, expectBytes, expectString, expectUint, receivedHeader, uintHead } from './cbor.js';
import { ReplayWindow, DEFAULT_WINDOW } from './replay-window.js';

/** 2: the header names the target (version 1 did not). */
export const FRAME_VERSION = 2;
/** The target of a frame for every member (and the topic segment it goes to). */
export const ALL_MEMBERS = 'all';
export const GROUP_KEY_LENGTH = 32;
export const BOOT_SALT_LENGTH = 16;
const INFO = utf8('kagi/v1 vpn');
/** A sender to many targets keeps this many encoded headers at most (then starts again). */
const MAX_CACHED_HEADERS = 64;

export interface Frame {
  vpnId: string;
  epoch: number;
  sender: string;
  target: string;
  bootSalt: Uint8Array;
  counter: number;
  ciphertext: Uint8Array;
  header: Uint8Array;
}

export function decodeFrame(bytes: Uint8Array): Frame {
  const a = expectArray(decodeStrict(bytes, LIMITS.frameBytes), 8, 'frame');
  const version = expectUint(a[0], 0xffff, 'version');
  if (version !== FRAME_VERSION) throw new KagiError('version', `frame version ${version}`);
  const vpnId = expectString(a[1], ID_PATTERN, 'vpnId');
  const epoch = expectUint(a[2], LIMITS.maxEpoch, 'epoch');
  const sender = expectString(a[3], ID_PATTERN, 'sender');
  const target = expectString(a[4], ID_PATTERN, 'target');
  const bootSalt = expectBytes(a[5], 'bootSalt', BOOT_SALT_LENGTH, BOOT_SALT_LENGTH);
  const counter = expectUint(a[6], LIMITS.maxFrameCounter, 'counter');
  const ciphertext = expectBytes(a[7], 'ciphertext', AEAD_TAG_LENGTH, LIMITS.frameCiphertextBytes);
  return { vpnId, epoch, sender, target, bootSalt, counter, ciphertext, header: receivedHeader(bytes, ciphertext) };
}

function senderKey(c: Crypto, groupKey: Uint8Array, sender: string, bootSalt: Uint8Array): Uint8Array {
  return c.hkdf(groupKey, concat(utf8(sender), bootSalt), INFO, 32);
}

function checkGroupKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== GROUP_KEY_LENGTH) throw new KagiError('key', 'group key must be 32 bytes');
}

/** One member's sending side of one VPN. */
export class FrameSender {
  private epoch = -1;
  private key: Uint8Array | null = null;
  private counter = 0;
  /** Encoded header fields before the counter, by target; for this epoch only. */
  private readonly headers = new Map<string, Uint8Array>();
  readonly bootSalt: Uint8Array;

  constructor(
    private readonly c: Crypto,
    readonly vpnId: string,
    readonly sender: string,
  ) {
    expectString(vpnId, ID_PATTERN, 'vpnId');
    expectString(sender, ID_PATTERN, 'sender');
    this.bootSalt = c.randomBytes(BOOT_SALT_LENGTH);
  }

  /** Switch to a new epoch's group key; the counter restarts with the key. */
  setKey(epoch: number, groupKey: Uint8Array): void {
    checkGroupKey(groupKey);
    expectUint(epoch, LIMITS.maxEpoch, 'epoch');
    if (epoch <= this.epoch) throw new KagiError('argument', `epoch ${epoch} is not newer than ${this.epoch}`);
    if (this.key) wipe(this.key);
    this.key = senderKey(this.c, groupKey, this.sender, this.bootSalt);
    this.epoch = epoch;
    this.counter = 0;
    this.headers.clear();
  }

  get currentEpoch(): number {
    return this.epoch;
  }

  /** Wipe the sender key; nothing can be sealed after. */
  destroy(): void {
    if (this.key) wipe(this.key);
    this.key = null;
  }

  /** Seal `payload` for `target` (a member id, or ALL_MEMBERS). */
  seal(payload: Uint8Array, target: string): Uint8Array {
    if (!this.key) throw new KagiError('argument', 'no group key yet');
    expectString(target, ID_PATTERN, 'target');
    if (this.counter > LIMITS.maxFrameCounter) throw new KagiError('exhausted', 'frame counter exhausted: rekey needed');
    const counter = this.counter++;
    const header = this.header(target, counter);
    // header || cbor(ciphertext): the byte string's head is known before sealing, so the ciphertext is written once, into the frame.
    const prefix = concat(header, byteStringHead(payload.length + AEAD_TAG_LENGTH));
    return this.c.sealAfter(prefix, this.key, i2osp(counter, AEAD_NONCE_LENGTH), payload, header);
  }

  /**
   * encodeHeader([version, vpnId, epoch, sender, target, bootSalt, counter]):
   * all but the counter are the same for every frame of an epoch to one
   * target, so they are encoded once and the counter's CBOR appended.
   */
  private header(target: string, counter: number): Uint8Array {
    let fixed = this.headers.get(target);
    if (!fixed) {
      if (this.headers.size >= MAX_CACHED_HEADERS) this.headers.clear();
      const zero = encodeHeader([FRAME_VERSION, this.vpnId, this.epoch, this.sender, target, this.bootSalt, 0]);
      fixed = zero.subarray(0, zero.length - 1); // counter 0 is the one byte 0x00
      this.headers.set(target, fixed);
    }
    return concat(fixed, uintHead(counter));
  }
}

interface PeerState {
  /** The sender's current boot salt; hex only where it is retired (a Set key). */
  bootSalt: Uint8Array;
  key: Uint8Array;
  window: ReplayWindow;
  retired: Set<string>;
}

interface EpochKeys {
  epoch: number;
  groupKey: Uint8Array;
  /** Until when (ms) a previous epoch is still accepted. */
  until: number;
  peers: Map<string, PeerState>;
}

/** Old boot salts remembered per sender and epoch (a rekey resets them). */
const MAX_RETIRED = 64;

/** One member's receiving side of one VPN. */
export class FrameReceiver {
  private current: EpochKeys | null = null;
  private previous: EpochKeys | null = null;

  constructor(
    private readonly c: Crypto,
    readonly vpnId: string,
    private readonly graceMs: number,
    private readonly windowSize = DEFAULT_WINDOW,
  ) {}

  /** Install a new epoch's group key; the old one is kept for `graceMs`. */
  setKey(epoch: number, groupKey: Uint8Array, now: number): void {
    checkGroupKey(groupKey);
    if (this.current && epoch <= this.current.epoch) throw new KagiError('argument', `epoch ${epoch} is not newer`);
    if (this.previous) this.drop(this.previous);
    if (this.current) this.current.until = now + this.graceMs;
    this.previous = this.current;
    this.current = { epoch, groupKey: groupKey.slice(), until: Infinity, peers: new Map() };
  }

  get currentEpoch(): number {
    return this.current?.epoch ?? -1;
  }

  /** Wipe every key held (the member left, or the agent stops); nothing opens after. */
  destroy(): void {
    if (this.current) this.drop(this.current);
    if (this.previous) this.drop(this.previous);
    this.current = this.previous = null;
  }

  private drop(e: EpochKeys): void {
    wipe(e.groupKey);
    for (const p of e.peers.values()) wipe(p.key);
  }

  private keysFor(f: Frame, now: number): EpochKeys {
    if (f.vpnId !== this.vpnId) throw new KagiError('field', `frame for VPN ${f.vpnId}, not ${this.vpnId}`);
    const cur = this.current;
    if (cur && f.epoch === cur.epoch) return cur;
    const prev = this.previous;
    if (prev && f.epoch === prev.epoch && now < prev.until) return prev;
    if (cur && f.epoch > cur.epoch) throw new KagiError('epoch', `frame epoch ${f.epoch} is ahead of ours (${cur.epoch}): fetch keys`);
    throw new KagiError('epoch', `frame epoch ${f.epoch} not held`);
  }

  /**
   * Open a frame that arrived on the topic for `target` (this member's id,
   * or ALL_MEMBERS); its header must name the same target, checked before
   * any key is touched. Every rejection is a KagiError with a code.
   */
  open(bytes: Uint8Array, now: number, target: string): { sender: string; epoch: number; counter: number; payload: Uint8Array } {
    const f = decodeFrame(bytes);
    if (f.target !== target) throw new KagiError('unexpected', `frame for ${f.target} on the topic of ${target}`);
    const e = this.keysFor(f, now);
    const known = e.peers.get(f.sender);
    let state: PeerState;
    // The usual case, a sender's current boot, costs a 16-byte comparison:
    // its key is derived once per boot and epoch, not per frame.
    if (known && equalCT(known.bootSalt, f.bootSalt)) {
      state = known;
    } else {
      if (known?.retired.has(toHex(f.bootSalt))) throw new KagiError('replay', `frame from an earlier boot of ${f.sender}`);
      state = { bootSalt: f.bootSalt.slice(), key: senderKey(this.c, e.groupKey, f.sender, f.bootSalt), window: new ReplayWindow(this.windowSize), retired: known?.retired ?? new Set() };
    }
    if (!state.window.check(f.counter)) throw new KagiError('replay', `counter ${f.counter} from ${f.sender} replayed or too old`);
    const payload = this.c.open(state.key, i2osp(f.counter, AEAD_NONCE_LENGTH), f.ciphertext, f.header);
    if (!payload) {
      if (state !== known) wipe(state.key);
      throw new KagiError('auth', `frame from ${f.sender} failed authentication`);
    }
    if (state !== known) this.adopt(e, f.sender, known, state);
    state.window.commit(f.counter);
    return { sender: f.sender, epoch: f.epoch, counter: f.counter, payload };
  }

  /** A sender restarted: its new boot replaces the old, which is retired. */
  private adopt(e: EpochKeys, sender: string, old: PeerState | undefined, next: PeerState): void {
    if (old) {
      next.retired.add(toHex(old.bootSalt));
      if (next.retired.size > MAX_RETIRED) next.retired.delete(next.retired.values().next().value!);
      wipe(old.key);
    }
    e.peers.set(sender, next);
  }
}
