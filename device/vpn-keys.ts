/**
 * One member's keys for one VPN, as a terminal or a relay port holds them:
 * the frame sender and receiver and the epoch they are at.
 *
 * Rekeys reach members one by one, so a frame of the next epoch can arrive
 * before its key. Such a frame is held (a few, briefly) and opened when the
 * key is installed, instead of being lost to the switch; the caller is told
 * to fetch the current epoch in case the update itself was missed.
 */
import type { Crypto } from '../protocol/crypto/backend.js';
import { KagiError, isKagiError } from '../protocol/errors.js';
import { decodeFrame, FrameReceiver, FrameSender } from '../protocol/vpn-frame.js';
import { Shaper } from './shaper.js';

export interface OpenedFrame {
  sender: string;
  epoch: number;
  payload: Uint8Array;
}

/** Frames ahead of our epoch kept per VPN, and for how long (ms). */
export const HOLD_FRAMES = 256;
export const HOLD_MS = 5_000;
/** Frame header and tag around a payload, for rate accounting (bytes, about). */
const FRAME_OVERHEAD = 64;

export class MemberKeys {
  readonly tx: FrameSender;
  readonly rx: FrameReceiver;
  /** The VPN's planned send rate for this member (embodiment 5). */
  readonly shaper = new Shaper();
  private held: { bytes: Uint8Array; target: string; at: number }[] = [];

  constructor(c: Crypto, readonly vpnId: string, readonly member: string, graceMs: number) {
    this.tx = new FrameSender(c, vpnId, member);
    this.rx = new FrameReceiver(c, vpnId, graceMs);
  }

  get epoch(): number {
    return this.rx.currentEpoch;
  }

  /**
   * Install an epoch's key if it is newer than ours. Returns the held
   * frames it opens; frames still ahead stay held.
   */
  install(epoch: number, key: Uint8Array, now: number, onDrop: (e: KagiError) => void): OpenedFrame[] {
    if (epoch <= this.epoch) return [];
    this.tx.setKey(epoch, key);
    this.rx.setKey(epoch, key, now);
    const waiting = this.held;
    this.held = [];
    const out: OpenedFrame[] = [];
    for (const h of waiting) {
      const r = this.tryOpen(h.bytes, h.target, now);
      if (r === 'ahead') this.held.push(h);
      else if (r instanceof KagiError) onDrop(r);
      else out.push(r);
    }
    return out;
  }

  /** Seal for `target`: a member id, or ALL_MEMBERS. */
  seal(payload: Uint8Array, target: string): Uint8Array {
    return this.tx.seal(payload, target);
  }

  /**
   * Seal and hand a frame to `publish` when the VPN's rate allows: waits
   * for tokens; a cut VPN or a queue too long drops it (returns the reason).
   */
  async send(payload: Uint8Array, target: string, now: () => number, publish: (frame: Uint8Array) => Promise<void>): Promise<'cut' | 'rate' | null> {
    const a = this.shaper.admit(payload.length + FRAME_OVERHEAD, now());
    if (!a.ok) return a.reason;
    if (a.waitMs > 0) await new Promise((r) => setTimeout(r, a.waitMs));
    await publish(this.tx.seal(payload, target));
    return null;
  }

  /**
   * Open a frame that came on `target`'s topic (this member, or
   * ALL_MEMBERS): the opened frame, or 'ahead' when it is held for a newer
   * epoch's key. Every other rejection goes to `onDrop`.
   */
  receive(bytes: Uint8Array, target: string, now: number, onDrop: (e: KagiError) => void): OpenedFrame | 'ahead' | null {
    const r = this.tryOpen(bytes, target, now);
    if (r instanceof KagiError) return (onDrop(r), null);
    if (r !== 'ahead') return r;
    this.held = this.held.filter((h) => now - h.at < HOLD_MS || (onDrop(new KagiError('epoch', 'held frame expired before its key arrived')), false));
    if (this.held.length >= HOLD_FRAMES) onDrop(new KagiError('epoch', `more than ${HOLD_FRAMES} frames ahead of our epoch`));
    else this.held.push({ bytes, target, at: now });
    return 'ahead';
  }

  private tryOpen(bytes: Uint8Array, target: string, now: number): OpenedFrame | 'ahead' | KagiError {
    try {
      const f = this.rx.open(bytes, now, target);
      return { sender: f.sender, epoch: f.epoch, payload: f.payload };
    } catch (e) {
      if (!isKagiError(e)) throw e;
      // Only a frame that decodes can be 'epoch'; its epoch says whether a key is coming.
      if (e.code === 'epoch' && decodeFrame(bytes).epoch > this.epoch) return 'ahead';
      return e;
    }
  }

  /** Out of the VPN (left, evicted, revoked) or stopping: wipe the keys, forget held frames. */
  destroy(): void {
    this.tx.destroy();
    this.rx.destroy();
    this.held = [];
  }

  get heldFrames(): number {
    return this.held.length;
  }
}
