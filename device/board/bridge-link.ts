/**
 * The agent's MQTT link over a board's host bridge: the same contract as
 * MqttLink on Node (device/platform.ts Link), with the host doing the
 * sockets and this class doing what must be the same everywhere: kagi's
 * CONNECT credentials (a fresh counter per attempt), reconnects with
 * backoff and jitter, resubscribing, and failing publishes while down.
 *
 *   CONNECTING ──onConnect──▶ UP ──onClose──▶ WAITING ──timer──▶ CONNECTING
 *        │                                                         ▲
 *        └──────────────onClose (not the first attempt)────────────┘
 *   any ──close()──▶ CLOSED
 */
import type { Link, LinkOptions } from '../platform.js';
import type { Crypto } from '../../protocol/crypto/backend.js';
import type { NumberStore } from '../../protocol/store.js';
import { ConnectCredentials } from '../../protocol/connect-auth.js';
import { backoffDelay, DEFAULT_BACKOFF } from '../../protocol/backoff.js';
import type { HostBridge } from './host.js';
import { detach } from '../detach.js';
import { LinkSubscriptions } from '../link-subscriptions.js';

type LinkState = 'CONNECTING' | 'UP' | 'WAITING' | 'CLOSED';

export interface BridgeLinkOptions extends LinkOptions {
  host: HostBridge;
  crypto: Crypto;
  numbers: NumberStore;
  /** CONNECT credentials: kagi's counter MAC, static (dynsec), or none. */
  brokerAuth: 'counter' | 'static' | 'none';
  random(): number;
}

export class BridgeLink implements Link {
  private state: LinkState = 'CONNECTING';
  private attempt = 0;
  private retry: number | null = null;
  private readonly credentials: ConnectCredentials;
  /** Every topic asked for, and those granted on this connection (decision 137). */
  private readonly subs: LinkSubscriptions;
  /** Publishes waiting for their PUBACK: failed when the link dies. */
  private readonly inFlight = new Set<(reason: string) => void>();

  constructor(private readonly o: BridgeLinkOptions) {
    this.credentials = new ConnectCredentials(o.crypto, o.clientId, o.secretKey, o.brokerAuth === 'none' ? undefined : o.brokerPublicKey, o.brokerAuth === 'static' ? 'static' : 'counter', o.numbers);
    this.subs = new LinkSubscriptions(o.subscriptions);
  }

  get connected(): boolean {
    return this.state === 'UP';
  }

  /** The first connection: resolves on CONNACK, rejects if it fails. */
  async connect(): Promise<void> {
    let first!: () => void;
    let refused!: (e: Error) => void;
    const answered = new Promise<void>((resolve, reject) => ((first = resolve), (refused = reject)));
    await this.open(first, refused);
    await answered;
  }

  private async open(first?: () => void, refused?: (e: Error) => void): Promise<void> {
    this.state = 'CONNECTING';
    const password = await this.credentials.password();
    const username = this.credentials.username;
    this.o.host.mqttConnect(
      {
        clientId: this.o.clientId,
        keepalive: 30,
        ...(username !== undefined ? { username } : {}),
        ...(password ? { password } : {}),
        ...(this.o.will ? { will: this.o.will } : {}),
      },
      {
        onConnect: () => {
          if (this.state === 'CLOSED') return;
          this.state = 'UP';
          this.attempt = 0;
          const s = this.subs.connected();
          this.o.host.mqttSubscribe(s.topics, (e) => (e ? this.o.host.log('warn', `mqtt ${this.o.clientId}: subscribe failed: ${e}`) : s.granted()));
          this.o.onConnect?.();
          first?.();
          first = undefined;
        },
        onClose: (reason) => {
          for (const lost of this.inFlight) lost(reason);
          this.inFlight.clear();
          if (this.state === 'CLOSED' || this.state === 'WAITING') return;
          if (first) {
            // Only the first attempt can fail connect(); after that we retry.
            this.state = 'CLOSED';
            refused?.(new Error(`broker refused ${this.o.clientId}: ${reason}`));
            return;
          }
          this.state = 'WAITING';
          const delay = backoffDelay(this.attempt++, this.o.random(), DEFAULT_BACKOFF);
          this.o.host.log('debug', `mqtt ${this.o.clientId}: ${reason}; reconnecting in ${delay} ms`);
          this.retry = this.o.host.setTimer(delay, () => {
            this.retry = null;
            if (this.state === 'WAITING') detach(this.open(), `mqtt ${this.o.clientId}: reconnect`, this.o.host.log, 'warn');
          });
        },
        onMessage: (topic, payload) => {
          if (this.state === 'UP') this.o.onMessage(topic, payload);
        },
      },
    );
  }

  publish(topic: string, payload: Uint8Array, retain = false): Promise<void> {
    if (this.state !== 'UP') return Promise.reject(new Error(`${this.o.clientId}: not connected to the broker`));
    return new Promise((resolve, reject) => {
      const lost = (reason: string) => reject(new Error(`${this.o.clientId}: connection lost before the broker acknowledged (${reason})`));
      this.inFlight.add(lost);
      this.o.host.mqttPublish(topic, payload, retain, (e) => {
        if (!this.inFlight.delete(lost)) return; // already failed by onClose
        if (e) reject(new Error(`${this.o.clientId}: publish failed: ${e}`));
        else resolve();
      });
    });
  }

  /**
   * Subscribe now and at every CONNACK, each topic listed once. A
   * connection that drops before the SUBACK is not the caller's failure:
   * the next CONNACK subscribes the list, this topic with it (as MqttLink).
   * A topic the broker granted on this connection is not sent again.
   */
  subscribe(...topics: string[]): Promise<void> {
    const s = this.subs.add(topics);
    if (this.state !== 'UP' || s.topics.length === 0) return Promise.resolve(); // subscribed on the next CONNACK, or already
    return new Promise((resolve, reject) =>
      this.o.host.mqttSubscribe(s.topics, (e) => {
        if (!e) s.granted();
        if (!e || this.state !== 'UP') return resolve();
        reject(new Error(e));
      }),
    );
  }

  close(): Promise<void> {
    const was = this.state;
    this.state = 'CLOSED';
    if (this.retry !== null) this.o.host.clearTimer(this.retry);
    this.retry = null;
    if (was === 'WAITING') return Promise.resolve();
    return new Promise((resolve) => this.o.host.mqttEnd(was !== 'UP' || this.inFlight.size > 0, resolve));
  }
}
