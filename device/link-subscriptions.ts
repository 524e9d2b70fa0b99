/**
 * What a link subscribes, for both links (MqttLink on Node, BridgeLink on
 * boards): every topic ever asked for, each listed once, subscribed again
 * at every CONNACK; and the topics the broker granted on the current
 * connection, which a later subscribe does not send again (decision 137:
 * a restarted terminal's VPN topics, granted in its CONNECT's SUBSCRIBE).
 * A SUBACK that refuses any topic of its packet grants none of them here:
 * those are sent again when asked for.
 */

/** Topics to send in one SUBSCRIBE, and what to call once its SUBACK granted them all. */
export interface PendingSubscribe {
  topics: string[];
  granted(): void;
}

export class LinkSubscriptions {
  private readonly all: string[];
  private granted = new Set<string>();

  constructor(initial: readonly string[]) {
    this.all = [...initial];
  }

  /** At a CONNACK: a new connection, granted nothing yet; the whole list for its SUBSCRIBE. */
  connected(): PendingSubscribe {
    this.granted = new Set();
    return this.pending([...this.all]);
  }

  /** `topics` listed for every later connect; of them, those this connection was not granted. */
  add(topics: readonly string[]): PendingSubscribe {
    for (const topic of topics) if (!this.all.includes(topic)) this.all.push(topic);
    return this.pending(topics.filter((x) => !this.granted.has(x)));
  }

  private pending(topics: string[]): PendingSubscribe {
    const granted = this.granted; // this connection's: a late SUBACK of an earlier one fills only that
    return { topics, granted: () => topics.forEach((x) => granted.add(x)) };
  }
}
