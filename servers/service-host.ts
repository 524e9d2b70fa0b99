/**
 * What every service shares: its MQTT link, its Peer, who is who (service
 * keys from keys.json, device keys from the store) and where replies go.
 */
import type { Duplex } from 'node:stream';
import type { Crypto } from '../protocol/crypto/backend.js';
import { Peer, type Incoming, type PeerOptions, type Reply } from '../protocol/peer.js';
import { SERVICES, parseState, topics, type Service } from '../protocol/topics.js';
import { MqttLink } from '../runtime/node/mqtt.js';
import type { BrokerTls } from '../protocol/broker-tls.js';
import type { Store } from './store/store.js';
import type { ServiceKeys } from './identity.js';
import type { Metrics } from './metrics.js';
import type { LocalServices } from './local-services.js';
import type { Body } from '../protocol/body.js';
import { SoleLease, type Lease } from './store/lease.js';
import { BROKER_DROPPED_TOPIC, BrokerDrops } from './broker-drops.js';

export interface ServiceContext {
  crypto: Crypto;
  store: Store;
  keys: ServiceKeys;
  brokerUrl: string;
  /** How an mqtts:// brokerUrl is checked (kagi up --broker-pin / --broker-ca). */
  brokerTls?: BrokerTls;
  /** A connection to the embedded broker in this process, made anew for each attempt (decision 132); else brokerUrl's. */
  brokerStream?: () => Duplex;
  /** CONNECT credentials: counter (embedded broker), static (dynsec), none. */
  brokerAuth: 'counter' | 'static' | 'none';
  timeoutMs: number;
  /** Counters for /metrics (servers/metrics.ts). */
  metrics: Metrics;
  /** One of several instances of each service on a shared broker and store (see startService). */
  instance?: InstanceOptions;
  /** The services run in this process, which answer each other by a call (local-services.ts). */
  local?: LocalServices;
  log(level: 'debug' | 'info' | 'warn', msg: string): void;
}

export interface InstanceOptions {
  /** This instance's name: its MQTT client ids are SERVICE-NAME. */
  name: string;
  /** Shared subscription groups are GROUP-SERVICE (default kagi: $share/kagi-auth/…). */
  group: string;
  /** How often a waiting instance asks for a duty's lease (ms). */
  leaseRetryMs?: number;
}

/** The topics devices and services send requests to, per service (the rest is replies and channel messages). */
const REQUEST_OPS: Record<Service, string[]> = { auth: ['service'], config: ['request', 'join', 'admin'], keys: ['service'] };

/**
 * What a service subscribes to. One instance: its whole subtree. Several:
 * requests through a shared subscription (the broker hands each to one
 * instance), replies and channel messages to every instance (only the one
 * that sent the request can open a reply; only the lease holder takes the
 * rest; see Peer.takesUnsolicited).
 */
export function serviceSubscriptions(name: Service, instance?: InstanceOptions): string[] {
  if (!instance) return [topics.serviceAll(name)];
  return [...REQUEST_OPS[name].map((op) => `$share/${instance.group}-${name}/${topics.service(name, op)}`), topics.service(name, 'reply')];
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
  /** The lease of the service's once-only duties (always held by a sole instance). */
  lease: Lease;
  close(): Promise<void>;
}

export async function startService(
  name: Service,
  ctx: ServiceContext,
  handlers: Pick<PeerOptions, 'onRequest' | 'onForeign' | 'onChannel' | 'takesRequest' | 'takesChannel'> & {
    /**
     * The service's answer to another service's `service.request` (auth,
     * keys): taken over the broker (as the Peer's onRequest) and, where the
     * asker runs in this process, by a call (local-services.ts).
     */
    serve?: (from: string, body: unknown, aside?: () => void) => Promise<Body | undefined>;
  },
  bind?: (peer: Peer) => void,
  /** Each device state message (the config server's liveness), after startService's own use of it. */
  onState?: (topic: string, payload: Uint8Array) => void,
): Promise<RunningService> {
  let peer: Peer | undefined;
  const { serve, ...peerHandlers } = handlers;
  // The auth server has no once-only duties: every instance is the same.
  const lease = name === 'auth' ? new SoleLease(name) : ctx.store.lease(name, { ...(ctx.instance?.leaseRetryMs ? { retryMs: ctx.instance.leaseRetryMs } : {}), log: ctx.log });
  if (name !== 'auth') {
    const gauge = (held: boolean) => ctx.metrics.set('kagi_lease_held', held ? 1 : 0, { service: name });
    gauge(lease.held);
    lease.onChange(gauge);
  }
  // On an external broker the config service watches what it drops (broker-drops.ts).
  const drops = name === 'config' && ctx.brokerAuth !== 'counter' ? new BrokerDrops(ctx.metrics, ctx.log, () => lease.held) : undefined;
  const link = new MqttLink({
    url: ctx.brokerUrl,
    clientId: name,
    ...(ctx.instance ? { mqttClientId: `${name}-${ctx.instance.name}`, protocolVersion: 5 as const } : {}),
    crypto: ctx.crypto,
    secretKey: ctx.keys[name].secretKey,
    brokerPublicKey: ctx.brokerAuth === 'none' ? undefined : ctx.keys.broker.publicKey,
    authMode: ctx.brokerAuth === 'static' ? 'static' : 'counter',
    numbers: ctx.store.numbers,
    ...(ctx.brokerTls ? { tls: ctx.brokerTls } : {}),
    ...(ctx.brokerStream ? { stream: ctx.brokerStream } : {}),
    // Nothing leaves the service resting on a write not yet on disk (decision 140).
    beforePublish: () => ctx.store.durable(),
    // The services that ask devices (config, keys) hear their state: a
    // device whose connection came back is sent again what it may have
    // missed (Peer.resend), and config keeps its liveness by it.
    subscriptions: [...serviceSubscriptions(name, ctx.instance), ...(name === 'auth' ? [] : [topics.state('+')]), ...(drops ? [BROKER_DROPPED_TOPIC] : [])],
    onMessage: (topic, payload) => {
      if (topic === BROKER_DROPPED_TOPIC) return drops?.heard(payload);
      if (!topic.startsWith(topics.serviceAll(name).slice(0, -1))) {
        const said = parseState(topic, payload);
        if (said?.state === 'online' && peer) void peer.resend(said.deviceId);
        return onState?.(topic, payload);
      }
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
    // Instances reserve one number at a time, so what they publish stays within receivers' windows.
    ...(ctx.instance ? { sendBlock: 1 } : {}),
    takesUnsolicited: () => lease.held,
    onDrop: (reason) => ctx.metrics.count('kagi_messages_dropped_total', { service: name, reason }),
    ...peerHandlers,
    ...(serve ? { onRequest: (m: Incoming) => serviceRequest(serve, m) } : {}),
  });
  bind?.(peer);
  try {
    await link.connect();
  } catch (e) {
    await lease.close();
    throw e;
  }
  ctx.log('info', `${name} service up${ctx.instance ? ` (instance ${ctx.instance.name})` : ''}`);
  const closeDoor = serve && ctx.local?.open(name, serve);
  return {
    name,
    peer,
    link,
    lease,
    close: async () => {
      closeDoor?.();
      peer!.cancelAll(`${name} service stopping`);
      await link.close();
      await lease.close();
    },
  };
}

/** A `service.request` that came over the broker, answered by `serve` (no reply when it does not take it). */
async function serviceRequest(serve: (from: string, body: unknown) => Promise<Body | undefined>, m: Incoming): Promise<Reply | undefined> {
  if (m.env.type !== 'service.request') return undefined;
  const body = await serve(m.env.from, m.body);
  return body && { type: 'service.response', body };
}

async function deviceKey(store: Store, id: string): Promise<Uint8Array | undefined> {
  const d = await store.getDevice(id);
  return d && !d.revoked ? d.publicKey : undefined;
}
