/**
 * Keeping seq_windows (replay windows, protocol/replay.ts) from growing for
 * ever, as SQL both engines run. Spelled once; `s(i)` and `n(i)` write the
 * engine's i-th placeholder for a text and a number.
 *
 * Rows that go:
 *  - a channel's window (`rx:ME:SENDER#TAG`) once the channel is replaced
 *    (the replaced one's key, by the caller who read it before) or its
 *    device revoked: a message on a channel the receiver no longer
 *    holds fails to open and never reaches a window;
 *  - a sender era's window (`rx:ME:SENDER~ERA`) idle for ERA_IDLE_SWEEP_S:
 *    every message that could still be claimed in it is a sealed request,
 *    refused as stale once older than REQUEST_VALIDITY_S + CLOCK_SKEW_S
 *    (60 s), before its window is looked at, so a swept era lets no replay
 *    through;
 *  - CONNECT era windows (`connect:ID~ERA`) beyond the newest
 *    CONNECT_ERAS_KEPT per client: a password carries no time, so these are
 *    never swept by age (decision 64 and docs/protocol.md say what the cap
 *    allows).
 * Era 0 windows (`rx:ME:SENDER`, `connect:ID`) are never swept.
 */
import { CLOCK_SKEW_S, REQUEST_VALIDITY_S } from '../../protocol/sealed.js';
import { channelTag, type ChannelKeys } from '../../protocol/channel.js';
import { wipe } from '../../protocol/bytes.js';
import type { Crypto } from '../../protocol/crypto/backend.js';
import type { Store } from './store.js';

/** Idle time after which an era's window of sealed requests goes: ten times the 60 s a request can be late. */
export const ERA_IDLE_SWEEP_S = 10 * (REQUEST_VALIDITY_S + CLOCK_SKEW_S);

/** CONNECT era windows kept per client, newest by last use. */
export const CONNECT_ERAS_KEPT = 32;

/** An era suffix: `~` and 8 hex digits (replay.ts eraKey). */
const ERA_SUFFIX = 9;

/** Unix seconds now: what claims record as a window's last use. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** The key prefix of `sender`'s channel windows at `receiver` (Peer's guard prefix, then `#`). */
export function channelWindowPrefix(receiver: string, sender: string): string {
  return `rx:${receiver}:${sender}#`;
}

export function windowsSql(s: (i: number) => string, n: (i: number) => string) {
  return {
    /** Params: device id. Every channel window of the device at config and keys (revoked). */
    ofChannelsOf: `DELETE FROM seq_windows WHERE substr(key, 1, length('rx:config:' || ${s(1)}) + 1) = 'rx:config:' || ${s(1)} || '#'
  OR substr(key, 1, length('rx:keys:' || ${s(1)}) + 1) = 'rx:keys:' || ${s(1)} || '#'`,
    /** Params: the replaced channel's window key (channelWindowPrefix + tag): by primary key, no scan. */
    oneChannel: `DELETE FROM seq_windows WHERE key = ${s(1)}`,
    /** Params: idle before (s). */
    idleEras: `DELETE FROM seq_windows WHERE key LIKE 'rx:%~%' AND used_at < ${n(1)}`,
    /** Params: eras kept per client. */
    connectEras: `DELETE FROM seq_windows WHERE key IN (SELECT key FROM (
    SELECT key, ROW_NUMBER() OVER (PARTITION BY substr(key, 1, length(key) - ${ERA_SUFFIX}) ORDER BY used_at DESC, key DESC) AS n
    FROM seq_windows WHERE key LIKE 'connect:%~%') ranked WHERE n > ${n(1)})`,
  };
}

/**
 * Store `keys` as the channel `owner` (config, keys) holds with `peer`
 * (compare-and-set on `seq` where given) and delete the replay window of
 * the channel it replaced, named by its tag: nothing on that channel opens
 * any more. One write (Store.replaceChannel). Returns whether `keys` was kept.
 */
export async function replaceChannel(store: Store, c: Crypto, owner: 'config' | 'keys', peer: string, keys: ChannelKeys, seq?: number): Promise<boolean> {
  const old = await store.channels(owner).get(peer);
  let replacedTag: string | undefined;
  if (old) {
    const tag = channelTag(c, old);
    wipe(old.send, old.recv);
    // The same channel again (renewed with the keys it had) keeps its window.
    if (tag !== channelTag(c, keys)) replacedTag = tag;
  }
  return store.replaceChannel(owner, peer, keys, { seq, replacedTag });
}
