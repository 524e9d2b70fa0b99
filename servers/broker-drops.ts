/**
 * What an external Mosquitto threw away. Mosquitto queues at most
 * `max_queued_messages` (1000 by default) for each client and drops the
 * rest without a word to either side; a service takes a whole fleet's
 * requests through one connection, so a storm of re-joins overflows its
 * queue and devices wait out their timeouts (bench:storm --broker
 * mosquitto: 4,000–6,300 messages dropped in each storm of 3,000, a
 * minute's tail every time). Mosquitto counts them in a $SYS topic; the
 * config service subscribes to it, exports the count and says so when it
 * grows. Other brokers never publish the topic: then nothing happens.
 */
import type { Metrics } from './metrics.js';

export { BROKER_DROPPED_TOPIC } from '../network/mosquitto-dynsec.js';

export class BrokerDrops {
  /** Mosquitto publishes the count only once it is not 0. */
  private last = 0;

  constructor(
    private readonly metrics: Metrics,
    private readonly log: (level: 'warn', msg: string) => void,
    /** Only one instance says it (the lease holder); every one exports the count. */
    private readonly speaks: () => boolean = () => true,
  ) {}

  /** A $SYS message with the broker's count (the first may be from before we started: it is said too). */
  heard(payload: Uint8Array): void {
    const n = Number(new TextDecoder().decode(payload));
    if (!Number.isSafeInteger(n) || n < 0) return;
    this.metrics.set('kagi_external_broker_dropped', n);
    const before = this.last;
    this.last = n;
    if (n > before && this.speaks()) {
      this.log('warn', `broker: dropped ${n - before} messages for clients whose queue was full (${n} since it started); devices wait out their timeouts for them. On Mosquitto raise max_queued_messages (default 1000): each kagi service takes the fleet's requests through one connection`);
    }
  }
}
