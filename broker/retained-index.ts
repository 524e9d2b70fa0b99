/**
 * An exact-topic index of the embedded broker's retained messages.
 *
 * aedes's memory persistence answers every SUBSCRIBE by testing each
 * retained message against the subscribed pattern. Every kagi device keeps
 * a retained state topic, and every device subscribes to a few topics as it
 * joins, so a site of N devices coming back at once paid N × N topic tests
 * (the storm bench's profile: aedes/qlobber topic splitting at 11% of
 * `kagi up` with 1,000 devices, growing with N). Devices subscribe to exact
 * topics only (their inbox, their VPNs), so those are answered from this
 * index in one lookup each; a pattern with a wildcard (the config server's
 * `kagi/v1/dev/+/state`, once) still goes to aedes's scan.
 *
 * The index wraps the persistence instance aedes made (no second copy of
 * aedes-persistence to depend on): storeRetained keeps it in step, and
 * aedes's own store stays the one truth for everything else.
 */
import { Readable } from 'node:stream';

interface RetainedPacket {
  topic: string;
  payload: Buffer | Uint8Array;
}

interface RetainedPersistence {
  storeRetained(packet: RetainedPacket, cb?: (e: Error | null) => void): unknown;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

const isExact = (pattern: string) => !pattern.includes('+') && !pattern.includes('#');

export function indexRetained(persistence: RetainedPersistence): void {
  const byTopic = new Map<string, RetainedPacket>();
  const store = persistence.storeRetained.bind(persistence);
  const scan = persistence.createRetainedStreamCombi.bind(persistence);
  persistence.storeRetained = (packet, cb) => {
    // As aedes-persistence does: an empty payload deletes, else a copy replaces.
    if (packet.payload.length === 0) byTopic.delete(packet.topic);
    else byTopic.set(packet.topic, { ...packet });
    return store(packet, cb);
  };
  persistence.createRetainedStreamCombi = (patterns) => {
    if (!patterns.every(isExact)) return scan(patterns);
    return Readable.from(patterns.flatMap((t) => {
      const p = byTopic.get(t);
      return p ? [p] : [];
    }));
  };
}
