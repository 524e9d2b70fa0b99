/**
 * The VPNs a terminal was last joined to, kept in its secret store beside
 * its tickets (decision 137): a restarted agent names their topics in its
 * CONNECT's SUBSCRIBE, so its re-join on a ticket sends no SUBSCRIBE of
 * its own — one packet and one round trip fewer for each device of a
 * storm, on both sides. Not a secret and not a grant: the broker's ACL
 * decides at that SUBSCRIBE as at any other (a topic it refuses is asked
 * for again after the join), and every delivery is checked again.
 */
import { decodeStrict, encode } from '../protocol/cbor.js';
import type { SecretStore } from './platform.js';

const KEY = 'joined-vpns';
/** A stored list longer than this, or with longer ids, is not ours: ignored. */
const MAX_VPNS = 256;
const MAX_ID = 64;
/** CBOR (boards may have no TextDecoder), an array of strings. */
const MAX_BYTES = MAX_VPNS * (MAX_ID * 4 + 3) + 3;

export class JoinedVpns {
  /** What the store holds, once read (each start reads it once; a write only when it changes). */
  private held: string[] | undefined;

  constructor(private readonly store: SecretStore) {}

  /** The VPN ids of the last join; none when nothing (readable) was kept. */
  async recall(): Promise<string[]> {
    if (this.held) return this.held;
    const b = await this.store.get(KEY);
    let ids: string[] = [];
    try {
      const v: unknown = b ? decodeStrict(b, MAX_BYTES) : [];
      if (Array.isArray(v) && v.length <= MAX_VPNS && v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= MAX_ID)) ids = v as string[];
    } catch {
      // unreadable: as if none was kept; the next join writes it anew
    }
    return (this.held = ids);
  }

  /** Keep `ids` as the last join's VPNs (written only when they differ from what is kept). */
  async remember(ids: readonly string[]): Promise<void> {
    const was = await this.recall();
    if (was.length === ids.length && was.every((x, i) => x === ids[i])) return;
    const next = [...ids];
    await this.store.set(KEY, encode(next));
    this.held = next;
  }
}
