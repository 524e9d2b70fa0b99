/**
 * The control plane in one process (`kagi up`): the store, the embedded
 * broker (unless an external one is given) and the three services.
 */
import type { Crypto } from '../protocol/crypto/backend.js';
import { KagiBroker } from '../broker/broker.js';
import { BrokerAcl } from '../broker/acl.js';
import type { QuotaLimits } from '../broker/quota.js';
import type { Peer } from '../protocol/peer.js';
import { BrokerAclDriver } from '../network/broker-acl.js';
import { MemoryDriver } from '../network/memory.js';
import type { NetworkDriver } from '../network/driver.js';
import { NftablesDriver, type NftablesOptions } from '../network/nftables.js';
import { TcDriver } from '../network/tc.js';
import { MosquittoDynsecDriver, type DynsecOptions } from '../network/mosquitto-dynsec.js';
import { connectKey, staticPassword } from '../protocol/connect-auth.js';
import { openStore } from './store/open.js';
import { lockDataDir, type DataDirLock } from './data-dir-lock.js';
import { dataDirWarnings, makeDataDir, recordBroker, type FileBroker } from './data-dir.js';
import { isTlsUrl, type BrokerTls } from '../protocol/broker-tls.js';
import { brokerTlsStream, leafCertificate, spkiSha256 } from '../runtime/node/broker-tls.js';
import { Metrics, serveMetrics } from './metrics.js';
import type { Store } from './store/store.js';
import { loadServiceKeys, type ServiceKeys } from './identity.js';
import { isService, type InstanceOptions, type ServiceContext } from './service-host.js';
import { LocalServices } from './local-services.js';
import { startAuth, type AuthOptions } from './auth/auth.js';
import { livenessOptions, startConfig, type ConfigOptions } from './config/config.js';
import { startKeys } from './keys/keys.js';
import { SERVICES, type Service } from '../protocol/topics.js';

export interface ControlPlaneOptions {
  /** keys.json, and the SQLite tables unless `store` is given. */
  dataDir: string;
  /** The tables in PostgreSQL: postgres://user@host:port/db[?schema=name]. */
  store?: string;
  crypto: Crypto;
  host?: string;
  port?: number;
  /** Use this broker instead of starting the embedded one. */
  brokerUrl?: string;
  /** How an mqtts:// brokerUrl is checked (a pin of its key, or its CA). */
  brokerTls?: BrokerTls;
  /**
   * The embedded broker also serves MQTT over TLS on host:port with this
   * certificate (PEM, leaf first) and key; device and admin files then name
   * it (mqtts://, pinned), and clear MQTT is served on loopback only.
   */
  tls?: { cert: string; key: string; port: number };
  timeoutMs?: number;
  /** Which services this process runs (default all three). */
  services?: Service[];
  /** Also program an nftables firewall (checked at start: no nft, no start). */
  nftables?: NftablesOptions;
  /** The external broker is a Mosquitto with dynamic security: program it. */
  dynsec?: DynsecOptions;
  /** Embodiment 5: the link the VPNs share (bits/s; 0 = unknown, nothing cut). */
  linkCapacity?: number;
  /** Also enforce the bandwidth plan with tc HTB on this interface (needs linkCapacity). */
  tc?: { dev: string; netns?: string };
  /** How often the config server reads every table and reconciles when idle (ms, default 500; it stretches to ten full runs' length). */
  reconcileMs?: number;
  /** Monitoring (embodiment 4): poll interval, polls missed before eviction, continue-after. */
  liveness?: Pick<ConfigOptions, 'pollIntervalMs' | 'evictAfter' | 'continueAfterMs'>;
  /** Periodic rekey: default period for VPNs without their own (ms, default 1 h, 0 = off) and how often it is checked. */
  rekeyPeriodMs?: number;
  /** Resumption tickets' lifetime (ms; default 30 days). */
  ticketLifetimeMs?: number;
  keysTickMs?: number;
  /** The password check's hash pool (concurrency, queue bound) and throttling. */
  password?: AuthOptions['password'];
  /** The config server's admission places (decision 128; default: see join-path.ts). */
  admitted?: number;
  log?: ServiceContext['log'];
  /** Serve Prometheus metrics on this port (0 = any free one) at /metrics. */
  metricsPort?: number;
  /** Serve the web console (servers/console/) on host:port (port 0 = any free one); sessions last sessionMs. */
  console?: { host: string; port: number; sessionMs?: number };
  /**
   * Run as one of several instances of each service (needs brokerUrl, an
   * MQTT 5 broker with shared subscriptions, and a PostgreSQL store).
   */
  instance?: InstanceOptions;
  /** The embedded broker's per-device quotas (broker/quota.ts; defaults for what is not given). */
  quota?: Partial<QuotaLimits>;
  /**
   * Hold the data dir's lock for each duty run here (default: yes, unless
   * several instances share PostgreSQL). Off only for tests that start two
   * control planes on one dir on purpose.
   */
  lockDataDir?: boolean;
}

export interface ControlPlane {
  store: Store;
  keys: ServiceKeys;
  broker: KagiBroker | null;
  /** Where the services connect. */
  brokerUrl: string;
  /** What device and admin files made now name (broker.json): the TLS listener, pinned, when there is one. */
  fileBroker: FileBroker;
  memory: MemoryDriver;
  acl: BrokerAcl;
  metrics: Metrics;
  /** Where /metrics is served, when asked for. */
  metricsUrl: string | null;
  /** Where the web console is served, when asked for. */
  consoleUrl: string | null;
  reconcile(): Promise<void>;
  /** The Peer of each service run here: what the broker hands it goes to its `receive` (the fuzz test feeds it directly). */
  peers: Partial<Record<Service, Peer>>;
  close(): Promise<void>;
}

export async function startControlPlane(o: ControlPlaneOptions): Promise<ControlPlane> {
  // Loaded only when asked for, like the CLI's commands. It lists recent
  // refusals and evictions from the services' log lines (console/recent.ts).
  const ui = o.console ? await import('./console/server.js') : null;
  const recent = ui ? new ui.RecentEvents() : null;
  const log = recent ? recent.tap(o.log ?? (() => {})) : (o.log ?? (() => {}));
  const live = livenessOptions(o.liveness ?? {}); // bad intervals fail here, before anything starts
  if (o.instance && (!o.brokerUrl || !o.store)) throw new Error('instance: several instances share an external broker (--broker) and a PostgreSQL store (--store)');
  makeDataDir(o.dataDir);
  for (const w of dataDirWarnings(o.dataDir)) log('warn', `data dir: ${w}`);
  const run = new Set(o.services ?? SERVICES);
  // Every duty this process runs on the dir, the broker first: a second
  // control plane on the same dir is refused before it touches anything.
  const lock: DataDirLock | null = o.instance || o.lockDataDir === false ? null : lockDataDir(o.dataDir, [...(o.brokerUrl ? [] : ['broker']), ...SERVICES.filter((s) => run.has(s))]);
  let store: Store;
  let keys: ServiceKeys;
  try {
    store = await openStore(o.dataDir, o.store);
    keys = loadServiceKeys(o.dataDir, o.crypto);
  } catch (e) {
    lock?.release();
    throw e;
  }
  const acl = new BrokerAcl();
  const memory = new MemoryDriver();
  const metrics = new Metrics();
  let metricsUrl: string | null = null;
  let consoleUrl: string | null = null;
  const drivers: NetworkDriver[] = [memory];
  let broker: KagiBroker | null = null;
  let brokerUrl = o.brokerUrl;
  let fileBroker: FileBroker | undefined;
  const closers: (() => Promise<void>)[] = [];
  let onAddress: (id: string, address: string) => void = () => {};
  try {
    if (o.dynsec) {
      const stream = isTlsUrl(o.dynsec.url) ? brokerTlsStream(new URL(o.dynsec.url), o.brokerTls) : undefined;
      drivers.push(await dynsecDriver({ ...o.dynsec, ...(stream ? { stream } : {}) }, store, keys, o.crypto, closers));
    }
    if (o.tc) {
      const tc = new TcDriver({ dev: o.tc.dev, capacity: o.linkCapacity ?? 0, ...(o.tc.netns ? { netns: o.tc.netns } : {}) });
      await tc.check(); // refuse to start rather than run unshaped
      drivers.push(tc);
    }
    if (o.nftables) {
      const nft = new NftablesDriver(o.nftables);
      await nft.check(); // refuse to start rather than run open
      drivers.push(nft);
    }
    if (!brokerUrl) {
      broker = await KagiBroker.create({
        crypto: o.crypto,
        secretKey: keys.broker.secretKey,
        numbers: store.numbers,
        durable: () => store.durable(),
        acl,
        log,
        metrics,
        ...(o.quota ? { quota: o.quota } : {}),
        onConnect: (id, address) => onAddress(id, address),
        lookup: async (id) => {
          if (isService(id)) return { publicKey: keys[id].publicKey, kind: 'service' };
          const d = await store.getDevice(id);
          // A plaintext terminal has no key: it never speaks MQTT itself.
          return d && d.kind !== 'plaintext' ? { publicKey: d.publicKey, kind: 'device', revoked: d.revoked } : undefined;
        },
      });
      const host = o.host ?? '127.0.0.1';
      closers.push(() => broker!.close());
      // With TLS, clear MQTT stays on this host: the services here, local tools (decision 83).
      const plainHost = o.tls ? '127.0.0.1' : host;
      const port = await broker.listen(plainHost, o.port ?? 1883);
      brokerUrl = `mqtt://${plainHost}:${port}`;
      if (o.tls) {
        const tlsPort = await broker.listenTls(host, o.tls.port, o.tls);
        fileBroker = { broker: `mqtts://${host.includes(':') ? `[${host}]` : host}:${tlsPort}`, brokerTls: { spkiSha256: [spkiSha256(leafCertificate(o.tls.cert))] } };
      }
      const b = broker;
      drivers.push(new BrokerAclDriver(acl, (id) => b.disconnect(id)));
    }
    const brokerAuth = broker ? 'counter' : o.dynsec ? 'static' : 'none';
    fileBroker ??= { broker: brokerUrl, ...(o.brokerTls ? { brokerTls: o.brokerTls } : {}) };
    // The services here reach the embedded broker without a socket (decision 132).
    const embedded = broker;
    const ctx: ServiceContext = { crypto: o.crypto, store, keys, brokerUrl, ...(o.brokerTls && !broker ? { brokerTls: o.brokerTls } : {}), ...(embedded ? { brokerStream: () => embedded.connectInProcess() } : {}), brokerAuth, timeoutMs: o.timeoutMs ?? 10_000, metrics, log, ...(o.instance ? { instance: o.instance } : {}), local: new LocalServices() };
    const authOptions = { ...(o.password ? { password: o.password } : {}), ...(o.ticketLifetimeMs !== undefined ? { ticketLifetimeMs: o.ticketLifetimeMs } : {}) };
    const peers: Partial<Record<Service, Peer>> = {};
    if (run.has('auth')) {
      const auth = await startAuth(ctx, authOptions);
      closers.unshift(auth.close);
      peers.auth = auth.peer;
    }
    if (run.has('keys')) {
      const keysService = await startKeys(ctx, { rekeyPeriodMs: o.rekeyPeriodMs ?? 3_600_000, ...(o.keysTickMs ? { tickMs: o.keysTickMs } : {}) });
      closers.unshift(keysService.close);
      peers.keys = keysService.peer;
    }
    const config = run.has('config') ? await startConfig(ctx, { drivers, addressOf: (id) => broker?.addresses.get(id), linkCapacity: o.linkCapacity ?? 0, ...(o.admitted ? { admitted: o.admitted } : {}), ...o.liveness, ...(o.reconcileMs ? { reconcileMs: o.reconcileMs } : {}) }) : null;
    if (config) {
      peers.config = config.peer;
      closers.unshift(config.close);
      onAddress = (id, address) => {
        config.connected(id);
        void config.addressChanged(id, address).catch((e) => log('warn', `config: address of ${id}: ${(e as Error).message}`));
      };
    }
    if (o.metricsPort !== undefined) {
      const host = o.host ?? '127.0.0.1';
      const m = await serveMetrics(metrics, host, o.metricsPort);
      closers.push(m.close);
      metricsUrl = `http://${host}:${m.port}/metrics`;
    }
    if (o.console && ui && recent) {
      // The device page's why reads with kagi up's own settings, as `kagi why --remote` does.
      const why = { evictAfter: live.evictAfter, pollIntervalMs: live.pollIntervalMs, drivers: drivers.map((d) => d.name) };
      const running = await ui.startConsole({ ...o.console, crypto: o.crypto, store, keys, metrics, recent, log, why, ...(config ? { reconcile: config.reconcile } : {}) });
      closers.unshift(running.close); // first: its live streams end before the store closes
      consoleUrl = running.url;
    }
    lock?.describe(fileBroker.broker);
    recordBroker(o.dataDir, fileBroker);
    return {
      store, keys, broker, brokerUrl, fileBroker, memory, acl, metrics, metricsUrl, consoleUrl, peers,
      reconcile: config ? config.reconcile : async () => {},
      close: async () => {
        // The devices on our own broker lose it now: say so, so that
        // status does not show them online after we are gone.
        const gone = broker?.connectedDevices() ?? [];
        for (const c of closers) await c();
        const at = Date.now();
        for (const id of gone) await store.setPresence(id, false, at, brokerUrl!).catch(() => {}); // still the broker it was last heard on (monitoring counts its polls there after a restart)
        await store.close();
        lock?.release();
      },
    };
  } catch (e) {
    for (const c of closers) await c().catch(() => {});
    await store.close();
    lock?.release();
    throw e;
  }
}

/**
 * The dynsec driver, plus the logins it needs: every service and every
 * device that speaks MQTT gets an account whose password both sides derive
 * from their key and the broker key (made once per process, then kept).
 */
async function dynsecDriver(o: DynsecOptions, store: Store, keys: ServiceKeys, c: Crypto, closers: (() => Promise<void>)[]): Promise<NetworkDriver> {
  const d = new MosquittoDynsecDriver(o);
  closers.push(() => d.close());
  await d.check(); // refuse to start rather than run open
  const made = new Set<string>();
  const account = async (id: string, publicKey: Uint8Array, kind: 'service' | 'device') => {
    if (made.has(id)) return;
    await d.ensureAccount(id, staticPassword(c, connectKey(c, keys.broker.secretKey, publicKey), id), kind);
    made.add(id);
  };
  for (const s of SERVICES) await account(s, keys[s].publicKey, 'service');
  return {
    name: d.name,
    async apply(state) {
      for (const dev of await store.listDevices()) if (dev.kind !== 'plaintext' && !dev.revoked) await account(dev.id, dev.publicKey, 'device');
      await d.apply(state);
    },
  };
}
