/**
 * Channels (DESIGN §4, message kind `channel`): a long-lived pair of
 * per-direction symmetric keys between a device and one service, so polls,
 * liveness notices and key updates cost one AEAD each instead of an HPKE
 * seal (two or three X25519 on a board).
 *
 *  config channel: exported from the device's authentication request
 *    (`Export("kagi/v1 channel", 64)`), handed by the auth server to the
 *    config server; renewed by every config request.
 *  keys channel: exported from every join request of the holder's
 *    (`Export("kagi/v1 keys channel", 64)`, decision 134; an earlier
 *    agent's from the HPKE-sealed keys.deliver of its join, `Export("kagi/v1
 *    channel", 64)`), so each join gives a fresh one: the holder takes it
 *    before it acknowledges, the key server once the acknowledgement is back
 *    (decision 60).
 *
 * Nonces are I2OSP(seq, 12) with seq from the per-pair SendCounter, and each
 * key serves one direction of one pair. A sender that lost its counters
 * (storage none, a wiped state file) also lost its channels (they live in
 * memory on a device), and gets new keys before it sends on a channel
 * again: no (key, nonce) repeats. The receiver's replay window is per
 * channel (`channelTag`), so such a sender's seq 1 under a new channel is
 * taken, while what was sealed under the old one no longer opens.
 */
import type { Crypto } from './crypto/backend.js';
import { toHex, utf8, wipe } from './bytes.js';

const TAG_LABEL = utf8('kagi/v1 channel window');

/**
 * A public name for a channel, from its receive key: the replay window of
 * channel messages is kept per (sender, tag), so a new channel starts a new
 * window. HMAC under the key, so the tag says nothing about the key.
 */
export function channelTag(c: Crypto, keys: ChannelKeys): string {
  return toHex(c.hmacSha256(keys.recv, TAG_LABEL).subarray(0, 8));
}

export interface ChannelKeys {
  /** Seals what we send. */
  send: Uint8Array;
  /** Opens what the peer sends. */
  recv: Uint8Array;
}

/** Where a party keeps its channel keys, by peer id. */
export interface ChannelBook {
  get(peer: string): Promise<ChannelKeys | undefined>;
  /**
   * Keep `keys` for `peer`. With `seq` (the seq of the key delivery the
   * channel came with) only if it is higher than the kept channel's, so
   * every instance ends on the holder's choice, the highest-seq delivery,
   * whatever order the acknowledgements come in. True when kept.
   */
  set(peer: string, keys: ChannelKeys, seq?: number): Promise<boolean>;
  /**
   * Keep `keys` unless the peer has a channel already, and return whichever
   * is kept: atomic, so concurrent first deliveries (a relay's ports, or
   * several key server instances) agree on one channel.
   */
  setIfAbsent(peer: string, keys: ChannelKeys): Promise<ChannelKeys>;
  delete(peer: string): Promise<void>;
}

export class MemoryChannelBook implements ChannelBook {
  private readonly m = new Map<string, ChannelKeys>();
  private readonly seqs = new Map<string, number>();
  async get(peer: string): Promise<ChannelKeys | undefined> {
    return this.m.get(peer);
  }
  async set(peer: string, keys: ChannelKeys, seq?: number): Promise<boolean> {
    if (seq !== undefined && this.m.has(peer) && (this.seqs.get(peer) ?? 0) >= seq) return false;
    const old = this.m.get(peer);
    this.m.set(peer, { send: keys.send.slice(), recv: keys.recv.slice() });
    this.seqs.set(peer, seq ?? 0);
    if (old) (wipe(old.send), wipe(old.recv));
    return true;
  }
  async setIfAbsent(peer: string, keys: ChannelKeys): Promise<ChannelKeys> {
    if (!this.m.has(peer)) await this.set(peer, keys);
    return this.m.get(peer)!;
  }
  async delete(peer: string): Promise<void> {
    const old = this.m.get(peer);
    this.m.delete(peer);
    this.seqs.delete(peer);
    if (old) (wipe(old.send), wipe(old.recv));
  }
  /** Wipe and forget every channel (the agent stops). */
  clear(): void {
    for (const k of this.m.values()) (wipe(k.send), wipe(k.recv));
    this.m.clear();
    this.seqs.clear();
  }
}

/** The requester's view of a request's channel keys (it sends `up`). */
export function asRequester(k: { up: Uint8Array; down: Uint8Array }): ChannelKeys {
  return { send: k.up, recv: k.down };
}

/** The receiver's view of a request's channel keys (it sends `down`). */
export function asReceiver(k: { up: Uint8Array; down: Uint8Array }): ChannelKeys {
  return { send: k.down, recv: k.up };
}
