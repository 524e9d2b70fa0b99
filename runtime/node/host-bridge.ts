/**
 * The host bridge (device/board/host.ts) implemented on Node, as a board's
 * native side would implement it: MQTT.js for the one MQTT connection,
 * node:crypto for the RNG, Node timers, a Map for flash storage. The
 * QuickJS board host (runtime/quickjs/board-host.ts) puts a VM in front of
 * it; tests also run the board agent on Node directly against it.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { randomBytes } from 'node:crypto';
import type { HostBridge, HostMqttConnect, HostMqttEvents, LogLevel } from '../../device/board/host.js';
import { detach } from '../../device/detach.js';
import { isTlsUrl, type BrokerTls } from '../../protocol/broker-tls.js';
import { brokerTlsStream } from './broker-tls.js';

export class NodeHostBridge implements HostBridge {
  private readonly timers = new Map<number, ReturnType<typeof setTimeout>>();
  private nextTimer = 1;
  private client: MqttClient | null = null;
  /** The board's flash. */
  readonly storage = new Map<string, string>();
  readonly lines: string[] = [];

  /**
   * `tls`: how an mqtts:// broker is checked. TLS is the native side's
   * business on a board (its MQTT stack's TLS, e.g. mbedTLS under the
   * board's MQTT client): the bundle never sees it. This bridge does it as
   * such a host would, with the same pin check as kagi agent.
   */
  constructor(private readonly brokerUrl: string, private readonly onLog?: (level: LogLevel, msg: string) => void, private readonly tls?: BrokerTls) {}

  random(n: number): Uint8Array {
    return new Uint8Array(randomBytes(n));
  }

  now(): number {
    return Date.now();
  }

  setTimer(ms: number, fn: () => void): number {
    const id = this.nextTimer++;
    this.timers.set(id, setTimeout(() => (this.timers.delete(id), fn()), ms));
    return id;
  }

  clearTimer(id: number): void {
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
  }

  /** Timers not yet run (a board host frees their callbacks on dispose). */
  get pendingTimers(): number {
    return this.timers.size;
  }

  storageGet(key: string): string | undefined {
    return this.storage.get(key);
  }

  storagePut(key: string, value: string): void {
    this.storage.set(key, value);
  }

  mqttConnect(o: HostMqttConnect, ev: HostMqttEvents): void {
    const options: mqtt.IClientOptions = {
      clientId: o.clientId,
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password ? { password: Buffer.from(o.password) } : {}),
      keepalive: o.keepalive,
      clean: true,
      reconnectPeriod: 0, // the agent reconnects (bridge contract)
      protocolVersion: 4,
      ...(o.will ? { will: { topic: o.will.topic, payload: Buffer.from(o.will.payload), retain: o.will.retain, qos: 1 as const } } : {}),
    };
    const client = isTlsUrl(this.brokerUrl) ? new mqtt.MqttClient(brokerTlsStream(new URL(this.brokerUrl), this.tls), options) : mqtt.connect(this.brokerUrl, options);
    this.client = client;
    let closed = false;
    const close = (reason: string) => {
      if (closed) return;
      closed = true;
      if (this.client === client) this.client = null;
      ev.onClose(reason);
    };
    client.on('connect', () => ev.onConnect());
    client.on('message', (topic, payload) => ev.onMessage(topic, new Uint8Array(payload)));
    client.on('error', (e) => close(e.message));
    client.on('close', () => close('connection closed'));
  }

  mqttPublish(topic: string, payload: Uint8Array, retain: boolean, done: (error?: string) => void): void {
    const c = this.client;
    if (!c) return done('not connected');
    // done() is the board's callback: if it throws, that is logged and counted, not lost.
    detach(c.publishAsync(topic, Buffer.from(payload), { qos: 1, retain }).then(() => done(), (e: Error) => done(e.message)), 'host mqtt publish', (l, m) => this.log(l, m));
  }

  mqttSubscribe(topics: string[], done: (error?: string) => void): void {
    const c = this.client;
    if (!c) return done('not connected');
    if (topics.length === 0) return done();
    detach(c.subscribeAsync(topics, { qos: 1 }).then(() => done(), (e: Error) => done(e.message)), 'host mqtt subscribe', (l, m) => this.log(l, m));
  }

  mqttEnd(force: boolean, done: () => void): void {
    const c = this.client;
    this.client = null;
    if (!c) return done();
    c.end(force, {}, () => done());
  }

  /** Drop the MQTT connection as a network fault would (tests). */
  dropConnection(): void {
    this.client?.stream.destroy();
  }

  log(level: LogLevel, msg: string): void {
    this.lines.push(`${level}: ${msg}`);
    this.onLog?.(level, msg);
  }

  /** Stop every timer and the connection. */
  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.client?.end(true);
    this.client = null;
  }
}
