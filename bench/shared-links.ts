/**
 * Simulated terminals on shared MQTT connections (bench/scale): the real
 * TerminalAgent, but `perLink` agents share one MQTT.js connection, so ten
 * thousand of them do not need ten thousand sockets. Each agent's
 * subscriptions are exact topics (its inbox, its VPNs' topics); messages
 * are routed to every agent that subscribed the topic. No wills (they are
 * per connection) and no broker auth (Mosquitto as the tests run it).
 */
import mqtt from 'mqtt';
import type { Link, Platform } from '../device/platform.js';
import { MemoryNumberStore } from '../protocol/store.js';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { noDelay } from './common.js';

export class SharedLinks {
  private readonly clients: Promise<mqtt.MqttClient>[] = [];
  private readonly routes = new Map<string, Set<(topic: string, payload: Uint8Array) => void>>();
  private readonly retained = new Set<string>();
  private n = 0;

  constructor(private readonly url: string, private readonly perLink: number, private readonly tag: string) {}

  /** The connection for the next agent (made once: agents connecting together share the promise). */
  private client(): Promise<mqtt.MqttClient> {
    const k = Math.floor(this.n++ / this.perLink);
    this.clients[k] ??= mqtt.connectAsync(this.url, { clientId: `${this.tag}-mux-${k}`, clean: true, reconnectPeriod: 1000 }).then((c) => {
      c.on('message', (topic, payload) => {
        const p = new Uint8Array(payload.buffer, payload.byteOffset, payload.length);
        for (const fn of this.routes.get(topic) ?? []) fn(topic, p);
      });
      return noDelay(c);
    });
    return this.clients[k]!;
  }

  platform(): Platform {
    const crypto = nodeCrypto();
    return {
      crypto,
      now: () => Date.now(),
      numbers: new MemoryNumberStore(),
      log: () => {},
      connect: async (l) => {
        const c = await this.client();
        const route = (topic: string) => {
          let set = this.routes.get(topic);
          if (!set) this.routes.set(topic, (set = new Set()));
          set.add(l.onMessage);
          return c.subscribeAsync(topic, { qos: 1 }).then(() => undefined);
        };
        for (const s of l.subscriptions) await route(s);
        const link: Link = {
          get connected() {
            return c.connected;
          },
          publish: async (topic, payload, retain = false) => {
            if (retain) this.retained.add(topic);
            await c.publishAsync(topic, Buffer.from(payload), { qos: 1, retain });
          },
          subscribe: route,
          close: async () => {},
        };
        return link;
      },
    };
  }

  /** Clear what the agents left retained on the broker, then disconnect. */
  async close(): Promise<void> {
    const clients = await Promise.all(this.clients);
    const c = clients[0];
    if (c) for (const topic of this.retained) await c.publishAsync(topic, Buffer.alloc(0), { qos: 1, retain: true });
    await Promise.all(clients.map((x) => x.endAsync()));
  }
}
