/**
 * A device's session with the control plane, shared by every agent kind:
 * the MQTT link, the Peer that seals and opens, and `ask`, which sends a
 * request to the auth server through the config server's front door and
 * retries on silence (control plane restarting, messages lost).
 */
import { isKagiError } from '../protocol/errors.js';
import { Peer, type Incoming, type Reply } from '../protocol/peer.js';
import { parseTopic, topics } from '../protocol/topics.js';
import { asBody } from '../protocol/body.js';
import type { Bundle } from './bundle.js';
import type { Link, Platform } from './platform.js';

/** A refusal from the control plane, with its reason. */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
}

export interface SessionHandlers {
  /** A sealed request from a service (keys.deliver, notice). */
  onRequest(m: Incoming): Promise<Reply | undefined>;
  /** A VPN frame on `kagi/v1/vpn/{vpn}/{target}`. */
  onFrame(vpnId: string, target: string, payload: Uint8Array): void;
}

export class DeviceSession {
  private link: Link | null = null;
  private peer: Peer | null = null;
  private stopped = false;

  constructor(
    readonly bundle: Bundle,
    private readonly p: Platform,
    private readonly o: { timeoutMs?: number; attempts?: number } = {},
  ) {}

  async start(h: SessionHandlers): Promise<void> {
    const b = this.bundle;
    this.stopped = false;
    this.peer = new Peer({
      crypto: this.p.crypto,
      id: b.id,
      secretKey: b.secretKey,
      numbers: this.p.numbers,
      transport: { publish: (t, m) => this.publish(t, m) },
      keyOf: async (id) => (id === 'auth' || id === 'config' || id === 'keys' ? b.services[id] : undefined),
      replyTopic: (id) => topics.service(id as 'keys', 'reply'),
      onRequest: (m) => h.onRequest(m),
      log: this.p.log,
    });
    this.link = await this.p.connect({
      clientId: b.id,
      secretKey: b.secretKey,
      brokerPublicKey: b.services.broker,
      subscriptions: [topics.inbox(b.id)],
      onMessage: (topic, payload) => {
        const t = parseTopic(topic);
        if (t?.area === 'vpn') return h.onFrame(t.a, t.b, payload);
        void this.peer?.receive(payload).catch((e) => this.p.log('warn', `${b.id}: ${(e as Error).message}`));
      },
    });
  }

  publish(topic: string, payload: Uint8Array): Promise<void> {
    if (!this.link) return Promise.reject(new Error('not connected'));
    return this.link.publish(topic, payload);
  }

  subscribe(topic: string): Promise<void> {
    if (!this.link) return Promise.reject(new Error('not connected'));
    return this.link.subscribe(topic);
  }

  /** A request sealed to the auth server, answered by the config server. */
  async ask(type: 'config.request' | 'join.request', op: 'request' | 'join', body: Record<string, unknown>): Promise<Reply> {
    const attempts = this.o.attempts ?? 5;
    for (let i = 1; ; i++) {
      try {
        const r = await this.peer!.request({ to: 'auth', pkR: this.bundle.services.auth, topic: topics.service('config', op), type, body, replyFrom: 'config', timeoutMs: this.o.timeoutMs ?? 10_000 });
        r.secrets.destroy();
        if (r.type === 'error') throw new RefusedError(String(asBody(r.body).reason));
        return r;
      } catch (e) {
        if (!isKagiError(e, 'unexpected') || i >= attempts || this.stopped) throw e;
        this.p.log('info', `${this.bundle.id}: no answer to ${type} (attempt ${i}/${attempts}), retrying`);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.peer?.cancelAll('agent stopping');
    await this.link?.close();
    this.link = null;
  }
}
