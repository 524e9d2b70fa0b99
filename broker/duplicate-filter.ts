/**
 * aedes's duplicate filter, turned off.
 *
 * aedes numbers every message as it enters `publish`, and each client
 * remembers the highest number it was handed (per broker id), dropping
 * anything at or below it as a duplicate (aedes lib/client.js `dedupe`,
 * there for clustered brokers that may route one message twice). But the
 * number is taken before publish's asynchronous steps (storing a retained
 * message, looking up offline subscriptions for QoS 1), so a message with
 * fewer steps overtakes one with more: a QoS 0 message overtakes a QoS 1
 * one, a plain one a retained one. A subscriber handed the later message
 * first then drops the earlier one, silently: nothing is counted, nothing
 * is logged, the publisher had its PUBACK. This was bench:storm's
 * one-minute tail: config requests and key deliveries that vanished
 * between two live connections at a storm's start, when thousands of wills
 * (retained) interleave with requests. A two-line reproduction on bare
 * aedes is in test/broker/duplicate-filter.test.ts.
 *
 * kagi runs one broker, which never routes a message twice, so nothing is
 * a duplicate: each client's record is replaced, before its CONNECT is
 * processed, by one shared record that remembers nothing for this broker.
 */

interface Client {
  duplicates: Record<string, number>;
}

type PreConnect = (client: Client, packet: unknown, callback: (error: Error | null, ok: boolean) => void) => void;

export interface FilteringBroker {
  /** This broker's id: the key of its messages in every client's record. */
  readonly id: string;
  preConnect: PreConnect;
}

export function turnOffDuplicateFilter(aedes: FilteringBroker): void {
  // Read as 0 (below every message's number, which starts at 1), written to nowhere.
  const nothingSeen: Record<string, number> = Object.create(null) as Record<string, number>;
  Object.defineProperty(nothingSeen, aedes.id, { get: () => 0, set: () => undefined });
  const preConnect = aedes.preConnect.bind(aedes);
  aedes.preConnect = (client, packet, callback) => {
    client.duplicates = nothingSeen;
    preConnect(client, packet, callback);
  };
}
