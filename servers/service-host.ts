/**
 * What every service shares: its MQTT link, its Peer, who is who (service
 * keys from keys.json, device keys from the store) and where replies go.
 */
import type { Crypto } from '../protocol/crypto/backend.js';
import { Peer, type PeerOptions } from '../protocol/peer.js';
import { SERVICES, topics, type Service } from '../protocol/topics.js';
import { MqttLink } from '../runtime/node/mqtt.js';
import type { Store } from './store/store.js';
import type { ServiceKeys } from './identity.js';
import type { Metrics } from './metrics.js';

export interface ServiceContext {
  crypto: Crypto;
  store: Store;
  keys: ServiceKeys;
  brokerUrl: string;
  /** CONNECT credentials: counter (embedded broker), static (dynsec), none. */
  brokerAuth: 'counter' | 'static' | 'none';
  timeoutMs: number;
  /** Counters for /metrics (servers/metrics.ts). */
  metrics: Metrics;
  log(level: 'debug' | 'info' | 'warn', msg: string): void;
}

/** Run `fn` every `ms`, skipping a beat while the previous run is still going. */
export function every(ms: number, fn: () => Promise<void>, onError: (e: Error) => void): ReturnType<typeof setInterval> {
  let busy = false;
  return setInterval(() => {
    if (busy) return;
    busy = true;
    fn().catch(onError).finally(() => (busy = false));
  }, ms);
}

export function isService(id: string): id is Service {
  return (SERVICES as readonly string[]).includes(id);
}

export interface RunningService {
  name: Service;
  peer: Peer;
  link: MqttLink;
  close(): Promise<void>;
}

export async function startService(
  name: Service,
  ctx: ServiceContext,
  handlers: Pick<PeerOptions, 'onRequest' | 'onForeign' | 'onChannel'>,
  bind?: (peer: Peer) => void,
  /** More topics than the service's own, with their handler (the config server's device state). */
  extra?: { topics: string[]; onMessage(topic: string, payload: Uint8Array): void },
): Promise<RunningService> {
  let peer: Peer | undefined;
  const link = new MqttLink({
    url: ctx.brokerUrl,
    clientId: name,
    crypto: ctx.crypto,
    secretKey: ctx.keys[name].secretKey,
    brokerPublicKey: ctx.brokerAuth === 'none' ? undefined : ctx.keys.broker.publicKey,
    authMode: ctx.brokerAuth === 'static' ? 'static' : 'counter',
    numbers: ctx.store.numbers,
    subscriptions: [topics.serviceAll(name), ...(extra?.topics ?? [])],
    onMessage: (topic, payload) => {
      if (extra && !topic.startsWith(topics.serviceAll(name).slice(0, -1))) return extra.onMessage(topic, payload);
      void peer?.receive(payload).catch((e) => ctx.log('warn', `${name}: ${(e as Error).message}`));
    },
    log: ctx.log,
  });
  peer = new Peer({
    crypto: ctx.crypto,
    id: name,
    secretKey: ctx.keys[name].secretKey,
    numbers: ctx.store.numbers,
    transport: link,
    keyOf: async (id) => (isService(id) ? ctx.keys[id].publicKey : await deviceKey(ctx.store, id)),
    replyTopic: (id) => (isService(id) ? topics.service(id, 'reply') : topics.inbox(id)),
    log: ctx.log,
    // Config and keys keep channels with devices, in the store so that a
    // restart (or another instance) carries on with them.
    ...(name === 'auth' ? {} : { channels: ctx.store.channels(name) }),
    ...handlers,
  });
  bind?.(peer);
  await link.connect();
  ctx.log('info', `${name} service up`);
  return {
    name,
    peer,
    link,
    close: async () => {
      peer!.cancelAll(`${name} service stopping`);
      await link.close();
    },
  };
}

async function deviceKey(store: Store, id: string): Promise<Uint8Array | undefined> {
  const d = await store.getDevice(id);
  return d && !d.revoked ? d.publicKey : undefined;
}
