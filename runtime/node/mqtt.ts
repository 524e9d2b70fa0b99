/**
 * MQTT on Node (MQTT.js) with kagi's CONNECT password: a fresh counter for
 * every connection attempt, so reconnects are never refused as replays.
 * The next password is prepared as soon as a connection closes, because
 * MQTT.js reads options.password synchronously when it reconnects.
 * Reconnects are ours, not MQTT.js's fixed period: exponential backoff with
 * full jitter (protocol/backoff.ts), reset by a successful CONNACK.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { createConnection } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Crypto } from '../../protocol/crypto/backend.js';
import { ConnectCredentials } from '../../protocol/connect-auth.js';
import type { NumberStore } from '../../protocol/store.js';
import type { Transport } from '../../protocol/peer.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from '../../protocol/backoff.js';
import { detach } from '../../device/detach.js';
import { BrokerRefusedError } from '../../device/platform.js';
import { isTlsUrl, type BrokerTls } from '../../protocol/broker-tls.js';
import { BrokerPinError, brokerTlsStream, isIdentityError } from './broker-tls.js';
import { corkTurn, type Corkable } from './cork-turn.js';
import { LinkSubscriptions } from '../../device/link-subscriptions.js';

export interface MqttLinkOptions {
  url: string;
  /** Who we are to the broker's authentication (and in logs). */
  clientId: string;
  /** The MQTT client id, when it differs (instances of one service each need their own). */
  mqttClientId?: string;
  crypto: Crypto;
  secretKey: Uint8Array;
  /** Broker public key; without it no password is sent (external brokers). */
  brokerPublicKey?: Uint8Array;
  /**
   * counter: kagi's embedded broker (MAC over id and a fresh counter);
   * static: username = id, a password derived from the same key (Mosquitto
   * dynamic security). Default counter.
   */
  authMode?: 'counter' | 'static';
  numbers: NumberStore;
  protocolVersion?: 4 | 5;
  will?: { topic: string; payload: Uint8Array; retain: boolean };
  onMessage(topic: string, payload: Uint8Array): void;
  /** After every CONNACK (first connect and each reconnect). */
  onConnect?(): void;
  subscriptions: string[];
  backoff?: BackoffOptions;
  /** Source address to connect from (a host with several addresses). */
  localAddress?: string;
  /** How an mqtts:// broker is checked (a pin or a CA; without it the system CAs). Ignored for mqtt://. */
  tls?: BrokerTls;
  /**
   * The connection itself, made anew at each attempt, instead of one to
   * `url` (which then only names the broker in logs): the embedded
   * broker's in-process streams for the services beside it (decision 132).
   */
  stream?: () => Duplex;
  /**
   * Awaited before each publish goes out (a service's: Store.durable, so
   * nothing leaves resting on a write a power cut could take back,
   * decision 140). Publishes keep their order.
   */
  beforePublish?: () => Promise<void>;
  log?(level: 'debug' | 'info' | 'warn', msg: string): void;
}

/**
 * MQTT.js logs through the `debug` package: each client made its own
 * logger (a tty check) and every packet called it, enabled or not (2% of
 * bench:storm's agents' thread). Without DEBUG in the environment it gets
 * a logger that does nothing; with it (DEBUG=mqttjs*), its own.
 */
const MQTTJS_LOG: { log?: () => void } = process.env.DEBUG ? {} : { log: () => {} };

export class MqttLink implements Transport {
  private client: MqttClient | null = null;
  private next: Buffer | undefined;
  private readonly credentials: ConnectCredentials;
  private attempt = 0;
  private retry: ReturnType<typeof setTimeout> | null = null;
  private closing = false;
  private readonly inFlight = new Set<() => void>();
  /** Every topic asked for, and those granted on this connection (decision 137). */
  private readonly subs: LinkSubscriptions;

  constructor(private readonly o: MqttLinkOptions) {
    this.subs = new LinkSubscriptions(o.subscriptions);
    this.credentials = new ConnectCredentials(o.crypto, o.clientId, o.secretKey, o.brokerPublicKey, o.authMode ?? 'counter', o.numbers);
  }

  private async password(): Promise<Buffer | undefined> {
    const p = await this.credentials.password();
    return p && Buffer.from(p);
  }

  private prepare(): void {
    const log = this.o.log ?? (() => {});
    detach(this.password().then((p) => void (this.next = p)), `mqtt ${this.o.clientId}: fresh connect password`, log, 'warn');
  }

  /**
   * Connect; resolves on the first CONNACK, rejects on refusal or timeout.
   * 30 s (MQTT.js's own default): a dead or unreachable broker fails at
   * once (refused, reset), so the timeout only ends waits on a busy one;
   * in a restart storm at 10 s most agents gave up on CONNACKs the broker
   * was still working on and asked again, doubling its work (decision 77).
   */
  async connect(timeoutMs = 30_000): Promise<void> {
    const options: mqtt.IClientOptions = {
      clientId: this.o.mqttClientId ?? this.o.clientId,
      password: await this.password(),
      username: this.credentials.username,
      protocolVersion: this.o.protocolVersion ?? 4,
      clean: true,
      keepalive: 30,
      reconnectPeriod: 0, // we schedule reconnects (backoff with jitter)
      connectTimeout: timeoutMs,
      will: this.o.will ? { topic: this.o.will.topic, payload: Buffer.from(this.o.will.payload), retain: this.o.will.retain, qos: 1 } : undefined,
      ...MQTTJS_LOG,
    };
    const url = new URL(this.o.url);
    // MQTT.js cannot pick a source address or check a pin; a stream builder
    // can. A plain connection takes one too: mqtt.connect() would parse the
    // URL and merge its options again at every client (1% of bench:storm's
    // agents' thread).
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1'); // an IPv6 literal without its brackets
    const localAddress = this.o.localAddress;
    const client = this.o.stream
      ? new mqtt.MqttClient(this.o.stream, options)
      : isTlsUrl(this.o.url)
        ? new mqtt.MqttClient(brokerTlsStream(url, this.o.tls, localAddress), options)
        : new mqtt.MqttClient(() => createConnection({ host, port: Number(url.port || 1883), noDelay: true, ...(localAddress ? { localAddress } : {}) }), options);
    this.client = client;
    client.on('close', () => {
      for (const lost of this.inFlight) lost();
      this.inFlight.clear();
      if (this.closing || this.retry) return;
      this.prepare();
      const delay = backoffDelay(this.attempt++, Math.random(), this.o.backoff ?? DEFAULT_BACKOFF);
      this.o.log?.('debug', `mqtt ${this.o.clientId}: connection closed, reconnecting in ${delay} ms`);
      this.retry = setTimeout(() => {
        this.retry = null;
        if (!this.closing) client.reconnect();
      }, delay);
    });
    client.on('reconnect', () => {
      if (this.next) client.options.password = this.next;
      this.next = undefined;
    });
    client.on('connect', () => {
      this.attempt = 0;
      this.o.onConnect?.();
      // Control messages and frames are small: Nagle would add ~40 ms a hop.
      (client.stream as { setNoDelay?(v: boolean): void }).setNoDelay?.(true);
      const s = this.subs.connected();
      if (s.topics.length)
        client.subscribe(s.topics, { qos: 1 }, (e) => {
          if (!e) s.granted();
        });
    });
    client.on('message', (topic, payload) => this.o.onMessage(topic, new Uint8Array(payload.buffer, payload.byteOffset, payload.length)));
    // A broker that is not the one the file names is worth a warning at
    // every attempt; network errors are reconnect noise.
    client.on('error', (e) => this.o.log?.(isIdentityError(e as { code?: unknown }) ? 'warn' : 'debug', `mqtt ${this.o.clientId}: ${this.o.url}: ${e.message}`));
    // Only the first connection attempt can fail connect(); after that,
    // errors are reconnect noise and MQTT.js keeps trying.
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        client.off('connect', ok);
        client.off('error', refused);
      };
      const fail = (e: Error) => {
        done();
        this.closing = true;
        if (this.retry) clearTimeout(this.retry);
        client.end(true);
        reject(e);
      };
      const ok = () => (done(), resolve());
      // A CONNACK refusal carries a reason code (MQTT-3.2.2.3); a socket error does not.
      const refused = (e: Error & { code?: unknown }) =>
        fail(typeof e.code === 'number' ? new BrokerRefusedError(`broker refused ${this.o.clientId}: ${e.message}`) : new Error(`cannot reach ${this.o.url}: ${untrusted(e)}`));
      const timer = setTimeout(() => fail(new Error(`could not connect to ${this.o.url} within ${timeoutMs} ms`)), timeoutMs);
      client.on('connect', ok);
      client.on('error', refused);
    });
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /**
   * QoS 1 publish. While the connection is down it fails at once, and a
   * publish in flight when the connection dies fails then: our sessions
   * are clean, so MQTT.js would otherwise hold it (and its caller) forever.
   * Control requests are retried by their callers; VPN frames are lost,
   * as on any link that goes down.
   */
  publish(topic: string, payload: Uint8Array, retain = false): Promise<void> {
    const before = this.o.beforePublish;
    return before ? before().then(() => this.publishNow(topic, payload, retain)) : this.publishNow(topic, payload, retain);
  }

  private publishNow(topic: string, payload: Uint8Array, retain: boolean): Promise<void> {
    const c = this.client;
    if (!c || !c.connected) return Promise.reject(new Error(`${this.o.clientId}: not connected to the broker`));
    // One promise per publish (this is every VPN frame): settled by the
    // PUBACK callback or by the connection's loss, whichever comes first.
    return new Promise<void>((resolve, reject) => {
      const lost = () => reject(new Error(`${this.o.clientId}: connection lost before the broker acknowledged`));
      this.inFlight.add(lost);
      // One write for the publishes made close together (cork-turn.ts).
      const stream = c.stream as Partial<Corkable> | undefined;
      if (stream?.cork && stream.uncork) corkTurn(stream as Corkable);
      // A view, not a copy: callers hand over a message they do not change afterwards (a sealed frame is made per publish).
      c.publish(topic, Buffer.from(payload.buffer, payload.byteOffset, payload.length), { qos: 1, retain }, (e) => {
        this.inFlight.delete(lost);
        if (e) reject(e);
        else resolve();
      });
    });
  }

  /**
   * Subscribe now and at every reconnect. A connection that drops before
   * the SUBACK is not the caller's failure: the next connect subscribes
   * every topic on the list, this one with them (a join that had its keys
   * failed on it, and the bench:storm on Mosquitto crashed on the
   * rejection). Each topic is listed once, however often it is asked for;
   * one the broker granted on this connection is not sent again (a
   * restarted agent's VPN topics, granted in its CONNECT's SUBSCRIBE).
   */
  async subscribe(...topics: string[]): Promise<void> {
    const s = this.subs.add(topics);
    const c = this.client;
    if (!c?.connected || s.topics.length === 0) return;
    try {
      await c.subscribeAsync(s.topics, { qos: 1 });
      s.granted();
    } catch (e) {
      if (this.client === c && c.connected) throw e;
      this.o.log?.('debug', `mqtt ${this.o.clientId}: connection lost while subscribing ${topics.join(', ')}: subscribed at the next connect`);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    // Graceful (DISCONNECT, no will) when connected with nothing in flight.
    // Otherwise forced: a graceful end waits for every outstanding PUBACK,
    // and one lost with an earlier connection never comes.
    const c = this.client;
    if (c) await c.endAsync(!c.connected || Object.keys(c.outgoing).length > 0);
  }
}

/** A TLS failure of the broker's identity, said as one: a pin mismatch says so itself; a chain or name error names what it was checked against. */
function untrusted(e: Error & { code?: unknown }): string {
  if (!isIdentityError(e) || e instanceof BrokerPinError) return e.message;
  return `the broker's certificate is not trusted (${e.message}; checked against the brokerTls CA of this file, or the system's CAs without one)`;
}
