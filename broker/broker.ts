/**
 * Embedded aedes broker with kagi's CONNECT check and topic ACL (DESIGN §5).
 *
 * CONNECT: client id = device or service id; the password is a MAC over
 * (id, counter) under X25519(its key, broker key); a counter is accepted
 * once (the highest per client is kept in the store). A valid, fresh
 * password may take over its own id (MQTT-3.1.4-3); anything else is refused
 * and the connected client stays.
 * ACL: services may use the whole tree. A device publishes only to the
 * service ops it uses, its own state topic (the only retained one) and VPNs
 * it is an active member of, each within its class's size
 * (publish-policy.ts); anything else closes its connection, counted. Within
 * those, per-client quotas (quota.ts) drop and count what is over, and
 * close a client that stays over. Both run before the message goes
 * anywhere, so no service spends a store read or crypto on it. A device
 * subscribes only to its inbox and its VPNs' topics. Forwarding re-checks
 * membership, so a member that left stops receiving at once.
 */
import { Aedes, type Client, type PublishPacket, type Subscription, type AuthenticateError } from 'aedes';
import { createServer, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { duplexPair } from './in-process.js';
import { createServer as createTlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Crypto } from '../protocol/crypto/backend.js';
import { connectKey, verifyConnectPassword } from '../protocol/connect-auth.js';
import { ReplayGuard } from '../protocol/replay.js';
import type { NumberStore } from '../protocol/store.js';
import { parseTopic } from '../protocol/topics.js';
import { isKagiError } from '../protocol/errors.js';
import type { BrokerAcl } from './acl.js';
import { indexRetained } from './retained-index.js';
import { checkDevicePublish, type PublishRefusal } from './publish-policy.js';
import { Quotas, type QuotaLimits, type QuotaReason } from './quota.js';
import { constantTimeQueues } from './emitter-queue.js';
import { boundEmitterDepth } from './emitter-depth.js';
import { turnOffDuplicateFilter, type FilteringBroker } from './duplicate-filter.js';

/**
 * What the broker counts, as it needs it: servers/metrics.ts's Metrics is
 * one; the broker does not import it (services sit above the broker).
 */
export interface BrokerMetrics {
  count(name: 'kagi_frames_forwarded_total' | 'kagi_frames_dropped_total' | 'kagi_broker_refused_total' | 'kagi_broker_dropped_total' | 'kagi_broker_disconnects_total', labels?: Record<string, string>): void;
  gauge(name: 'kagi_connected_clients', read: () => number): void;
}

export interface BrokerPrincipal {
  publicKey: Uint8Array;
  kind: 'device' | 'service';
  revoked?: boolean;
}

export interface BrokerOptions {
  crypto: Crypto;
  secretKey: Uint8Array;
  /** Who a client id is; undefined for strangers. */
  lookup(clientId: string): Promise<BrokerPrincipal | undefined>;
  numbers: NumberStore;
  /**
   * Resolves once the store's writes so far are on disk (Store.durable):
   * a CONNECT's counter is claimed on disk before its CONNACK (decision 140).
   */
  durable?: () => Promise<void>;
  acl: BrokerAcl;
  log?: (level: 'info' | 'debug' | 'warn', msg: string) => void;
  /** Frames forwarded and dropped, connected clients. */
  metrics?: BrokerMetrics;
  /** A client was admitted, from this address. */
  onConnect?(clientId: string, address: string): void;
  /** Per-device publish quotas (quota.ts DEFAULT_QUOTA for what is not given). */
  quota?: Partial<QuotaLimits>;
}

/**
 * Where a dropped publish goes: aedes can only refuse a publish by closing
 * the connection, so one over quota is acknowledged (QoS 1) and sent here,
 * emptied, where nobody subscribes ($-topics match no wildcard,
 * MQTT-4.7.2-1) and nothing is retained.
 */
const DROPPED_TOPIC = '$kagi/dropped';

const EMPTY = Buffer.alloc(0);
/** How long a client over its quota is not read after a dropped publish (ms). */
const HOLD_BACK_MS = 100;

/**
 * Connections the kernel holds for us before we accept them. Node's default
 * (511) overflowed in every restart storm of thousands (the host's
 * ListenOverflows counted them): a connection dropped there waits out the
 * kernel's retransmits, 1 s and more each. The kernel caps it at
 * net.core.somaxconn (4096 on current Linux).
 */
export const LISTEN_BACKLOG = 4096;

export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
}

export class KagiBroker {
  readonly aedes: Aedes;
  private readonly servers: Server[] = [];
  private readonly guard: ReplayGuard;
  private readonly kinds = new Map<string, 'device' | 'service'>();
  /** Last address each client connected from, for the network info table. */
  readonly addresses = new Map<string, string>();
  readonly refusals: { clientId: string; reason: string }[] = [];
  /** Per-device publish quotas. */
  readonly quotas: Quotas;
  /** Publishes refused (connection closed) and dropped (over quota), by reason: for tests and the flood bench. */
  readonly publishes = { refused: new Map<PublishRefusal, number>(), dropped: new Map<QuotaReason, number>(), disconnected: 0 };
  private readonly sweeper: ReturnType<typeof setInterval>;
  /** Connections told to go for their quota, whose packets in hand still come through. */
  private readonly closing = new WeakSet<Client>();

  private constructor(private readonly o: BrokerOptions, aedes: Aedes) {
    o.crypto.holdStaticKey(o.secretKey); // every CONNECT derives its key with it
    this.aedes = aedes;
    this.guard = new ReplayGuard(o.numbers, 'connect:');
    aedes.authenticate = (client, _user, password, done) =>
      void this.authenticate(client, password).then(
        (refusal) => done(refusal, refusal === null),
        (e: Error) => done(this.refuse(client.id, `lookup failed: ${e.message}`), false),
      );
    this.quotas = new Quotas(o.quota);
    aedes.authorizePublish = (client, packet, cb) => {
      const v = this.mayPublish(client, packet);
      // A dropped publish is answered HOLD_BACK_MS late: aedes reads a
      // client's next chunk only once every packet of the last is done, so
      // a flood waits in its own TCP window instead of costing the broker
      // a parse and a drop each (paced by TCP, not by us).
      if (v === 'held') setTimeout(() => cb(null), HOLD_BACK_MS);
      else cb(v ? new Error(`not authorized: ${v}`) : null);
    };
    aedes.published = (_packet, client, done) => {
      if (client && _packet.qos > 0 && _packet.topic !== DROPPED_TOPIC && !this.isService(client)) this.quotas.delivered(client.id);
      done();
    };
    aedes.on('clientDisconnect', (client) => this.quotas.closed(client.id));
    // Quota state of clients gone quiet is forgotten (bounded memory after a flood).
    this.sweeper = setInterval(() => this.quotas.sweep((id) => this.clients[id] !== undefined), 10_000);
    this.sweeper.unref();
    aedes.authorizeSubscribe = (client, sub, cb) => cb(null, this.maySubscribe(client, sub) ? sub : null);
    aedes.authorizeForward = (client, packet) => this.forward(client, packet);
    o.metrics?.gauge('kagi_connected_clients', () => aedes.connectedClients);
  }

  static async create(o: BrokerOptions): Promise<KagiBroker> {
    const aedes = await Aedes.createBroker({ connectTimeout: 10_000 });
    // aedes types do not show its persistence; the instance has it (aedes.js: this.persistence).
    indexRetained((aedes as unknown as { persistence: Parameters<typeof indexRetained>[0] }).persistence);
    constantTimeQueues((aedes as unknown as { mq: Parameters<typeof constantTimeQueues>[0] }).mq);
    boundEmitterDepth((aedes as unknown as { mq: Parameters<typeof boundEmitterDepth>[0] }).mq);
    turnOffDuplicateFilter(aedes as unknown as FilteringBroker);
    return new KagiBroker(o, aedes);
  }

  private log(level: 'info' | 'debug' | 'warn', msg: string): void {
    this.o.log?.(level, msg);
  }

  private refuse(clientId: string, reason: string): AuthenticateError {
    this.refusals.push({ clientId, reason });
    this.log('warn', `broker: refused CONNECT of ${clientId}: ${reason}`);
    const e = new Error(reason) as AuthenticateError;
    e.returnCode = 5; // [MQTT-3.2.2-3] 0x05 Connection Refused, not authorized
    return e;
  }

  private async authenticate(client: Client, password: Readonly<Buffer> | undefined): Promise<AuthenticateError | null> {
    const id = client.id;
    const who = await this.o.lookup(id);
    if (!who) return this.refuse(id, 'unknown client id');
    if (who.revoked) return this.refuse(id, 'revoked');
    if (!password) return this.refuse(id, 'no password');
    try {
      const key = connectKey(this.o.crypto, this.o.secretKey, who.publicKey);
      const { counter, era } = verifyConnectPassword(this.o.crypto, key, id, new Uint8Array(password));
      await this.guard.accept(id, counter, era);
    } catch (e) {
      if (isKagiError(e)) return this.refuse(id, e.code === 'replay' ? 'connect counter reused' : 'bad password');
      throw e;
    }
    // Admitted only once the claim of its counter would survive a power cut.
    try {
      await this.o.durable?.();
    } catch (e) {
      return this.refuse(id, `its counter's claim is not on disk: ${(e as Error).message}`);
    }
    this.kinds.set(id, who.kind);
    const sock = client.conn as { remoteAddress?: string };
    if (sock.remoteAddress) {
      const address = sock.remoteAddress.startsWith('::ffff:') ? sock.remoteAddress.slice(7) : sock.remoteAddress;
      this.addresses.set(id, address);
      if (who.kind === 'device') this.o.onConnect?.(id, address);
    }
    return null;
  }

  private isService(client: Client | null): boolean {
    return client === null || this.kinds.get(client.id) === 'service';
  }

  /**
   * A publish of a device: refused (the reason; aedes closes the
   * connection) when no honest agent would send it, dropped when over its
   * quota ('held': rewritten to DROPPED_TOPIC, so it is acknowledged and
   * goes nowhere), or admitted. A will is checked like any publish, but not
   * against the quota: it is the broker's message about the client.
   */
  private mayPublish(client: Client | null, packet: PublishPacket): PublishRefusal | 'held' | null {
    if (this.isService(client)) return null;
    if (!client) return 'acl';
    const bytes = packet.payload?.length ?? 0;
    const v = checkDevicePublish(client.id, { topic: packet.topic, retain: packet.retain, bytes }, this.o.acl);
    if (!v.ok) {
      this.publishes.refused.set(v.reason, (this.publishes.refused.get(v.reason) ?? 0) + 1);
      this.o.metrics?.count('kagi_broker_refused_total', { reason: v.reason });
      this.log('debug', `broker: refused a publish of ${client.id} (${v.reason}): closing its connection`);
      return v.reason;
    }
    if (packet === (client as unknown as { will?: unknown }).will) return null;
    const q = this.quotas.admit(client.id, { topic: packet.topic, bytes, qos: packet.qos, retain: packet.retain, control: v.cls === 'control' });
    if (q.admit) return null;
    this.publishes.dropped.set(q.reason, (this.publishes.dropped.get(q.reason) ?? 0) + 1);
    this.o.metrics?.count('kagi_broker_dropped_total', { reason: q.reason });
    Object.assign(packet, { topic: DROPPED_TOPIC, payload: EMPTY, retain: false });
    if (q.disconnect) this.overQuota(client, q.reason);
    return 'held';
  }

  /** A client that stayed over its quota: closed (once per connection). */
  private overQuota(client: Client, reason: QuotaReason): void {
    if (client.closed || this.closing.has(client)) return;
    this.closing.add(client);
    this.publishes.disconnected++;
    this.o.metrics?.count('kagi_broker_disconnects_total', { reason });
    this.log('warn', `broker: disconnecting ${client.id}: over its ${reason} quota for ${this.quotas.limits.overForMs} ms`);
    setImmediate(() => client.close()); // after aedes is done with the packet in hand
  }

  /**
   * Each delivery of a publish to a subscriber. A VPN cut by the bandwidth
   * plan: its frames are dropped here, quietly (a member that publishes
   * anyway is not disconnected for it). VPN frames are counted.
   */
  private forward<P extends { topic: string }>(client: Client, packet: P): P | null {
    const may = this.mayReceive(client, packet.topic);
    const t = parseTopic(packet.topic);
    if (t?.area !== 'vpn') return may ? packet : null;
    const dropped = !may ? 'acl' : this.o.acl.isCut(t.a) ? 'cut' : null;
    if (dropped) this.o.metrics?.count('kagi_frames_dropped_total', { reason: dropped });
    else this.o.metrics?.count('kagi_frames_forwarded_total');
    return dropped ? null : packet;
  }

  private maySubscribe(client: Client, sub: Subscription): boolean {
    if (this.isService(client)) return true;
    return this.mayReceive(client, sub.topic);
  }

  private mayReceive(client: Client | null, topic: string): boolean {
    if (this.isService(client)) return true;
    const t = parseTopic(topic);
    if (!t || !client) return false;
    if (t.area === 'dev') return t.a === client.id && t.b === 'in';
    if (t.area === 'vpn') return t.b === 'all' ? this.o.acl.isMember(t.a, client.id) : this.o.acl.carries(t.a, client.id, t.b);
    return false;
  }

  /** Listen on host:port (port 0 = ephemeral); resolves to the bound port. */
  listen(host: string, port: number): Promise<number> {
    // Small control messages and frames: no Nagle delay on the broker side.
    const server = createServer((sock) => {
      sock.setNoDelay(true);
      this.aedes.handle(sock);
    });
    return this.bind(server, host, port, `choose another with --port N (0 picks a free one), or use the broker already there with --broker mqtt://${host}:${port}`);
  }

  /**
   * A connection from this process (the services `kagi up` runs beside the
   * broker): the client's end of an in-process stream pair whose other end
   * aedes serves as it serves a socket (broker/in-process.ts, decision 132).
   */
  connectInProcess(): Duplex {
    const [client, server] = duplexPair();
    this.aedes.handle(server);
    return client;
  }

  /**
   * Also serve MQTT over TLS on host:port with this certificate (PEM chain,
   * leaf first) and key; resolves to the bound port. The same broker: the
   * same CONNECT check, ACL and clients as the plain listener.
   */
  listenTls(host: string, port: number, tls: { cert: string; key: string }): Promise<number> {
    const server = createTlsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, (sock) => {
      sock.setNoDelay(true);
      this.aedes.handle(sock);
    });
    // A failed handshake (a scanner, a client that refused our certificate)
    // is the client's business: counted by nobody, logged at debug.
    server.on('tlsClientError', (e) => this.o.log?.('debug', `broker: TLS handshake failed: ${e.message}`));
    return this.bind(server, host, port, `choose another with --tls-port N (0 picks a free one)`);
  }

  private bind(server: Server, host: string, port: number, hint: string): Promise<number> {
    return new Promise((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'EADDRINUSE') reject(new PortInUseError(`port ${port} on ${host} is in use: ${hint}`));
        else reject(e);
      });
      server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
        this.servers.push(server);
        resolve((server.address() as AddressInfo).port);
      });
    });
  }

  // aedes keeps connected clients by id; its typings do not show the map.
  private get clients(): Record<string, Client | undefined> {
    return (this.aedes as unknown as { clients: Record<string, Client | undefined> }).clients;
  }

  /** The devices connected right now. */
  connectedDevices(): string[] {
    return Object.keys(this.clients).filter((id) => this.kinds.get(id) === 'device');
  }

  /** Close a client's connection now (a revoked device); false if it is not connected. */
  disconnect(clientId: string): boolean {
    const c = this.clients[clientId];
    if (!c) return false;
    this.o.log?.('info', `broker: disconnecting ${clientId} (revoked)`);
    c.close();
    return true;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await new Promise<void>((r) => this.aedes.close(() => r()));
    for (const server of this.servers) await new Promise<void>((r) => server.close(() => r()));
  }
}
