/** kagi up: the control plane until interrupted. */
import { logFormat, logger } from '../log.js';
import { parsePostgresUrl } from '../../servers/store/postgres.js';
import { DATA_OPTION, UsageError, bitrate, byteSize, duration, int, parse, readStdinLine } from '../args.js';
import { isService, type InstanceOptions } from '../../servers/service-host.js';
import { isPostgresUrl } from '../../servers/store/open.js';
import type { Service } from '../../protocol/topics.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { startControlPlane } from '../../servers/control-plane.js';
import { livenessOptions } from '../../servers/config/config.js';
import { PortInUseError } from '../../broker/broker.js';
import { DataDirLockedError } from '../../servers/data-dir-lock.js';
import { DEFAULT_QUOTA, type QuotaLimits } from '../../broker/quota.js';
import { DEFAULT_TICKET_LIFETIME_MS } from '../../servers/auth/tickets.js';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { describeBrokerTls, isTlsUrl } from '../../protocol/broker-tls.js';
import { BROKER_TLS_OPTIONS, brokerFor } from '../remote-admin.js';
import { DEFAULT_SESSION_MS, MAX_SESSION_MS } from '../../servers/console/sessions.js';

export const upHelp = `usage: kagi up [--host H] [--port N] [--tls-cert FILE --tls-key FILE [--tls-port N]]
               [--broker URL [--broker-pin HEX | --broker-ca FILE]] [--services LIST] [--nftables [--nft-netns NS] [--nft-hook forward|input]] [--dynsec ADMIN --dynsec-password-stdin]
               [--poll-interval D] [--evict-after N] [--continue-after D] [--rekey-period D] [--ticket-lifetime D] [--timeout D]
               [--link-capacity RATE [--tc-dev IFACE [--tc-netns NS]]] [--data DIR] [--store postgres://…]
               [--metrics-port N] [--ui-port N [--ui-host H] [--ui-session D]] [--log-format json|text] [--verbose]
               [--quota-rate N] [--quota-control-rate N] [--quota-bytes SIZE] [--quota-inflight N] [--quota-retained SIZE] [--quota-over D]
               [--instance NAME [--share-group G] [--lease-retry D]]

Runs the embedded broker (default 127.0.0.1:1883; --port 0 picks a free
port) and the auth, config and key services on DIR (default ./kagi-data).
With --broker mqtt://host:port the services use that broker instead and no
broker is started. --services auth,config,keys (the default) picks which
services this process runs, so they can run one per process on a shared
broker and data dir. --nftables also programs this host's nftables firewall
(table inet kagi: per VPN, only members' addresses reach its port; hook
forward by default, input on the service host; --nft-netns runs nft in a
network namespace). If nft cannot run (not installed, not root) kagi up
refuses to start rather than run open. With --broker pointing at a Mosquitto
that loads the dynamic security plugin, --dynsec ADMIN (its admin user; the
password from standard input) makes kagi program it: logins for services
and devices (agents use --static-broker-auth) and per-VPN roles that follow
membership. --store postgres://user@host:5432/db[?schema=NAME] keeps the
tables in PostgreSQL (schema kagi by default, created and migrated on
start); keys.json stays in DIR.

TLS (README, "Which set-ups need TLS"):
  --tls-cert FILE     the embedded broker also serves MQTT over TLS on
  --tls-key FILE      --host:--tls-port with this certificate (PEM, leaf
                      first, then any intermediates) and key. Device and
                      admin files made from then on name
                      mqtts://HOST:TLS-PORT and pin the certificate's public
                      key (SHA-256 of its SubjectPublicKeyInfo, printed at
                      start), and agents refuse a broker whose key does not
                      match. Clear MQTT is then served on 127.0.0.1:--port
                      only (this process's services, local tools): move
                      existing files with kagi device set-broker.
  --tls-port N        the TLS port (default 8883; 0 picks a free one)
  --broker-pin HEX    with --broker mqtts://…: the services check that
  --broker-ca FILE    broker's key against this pin, or its certificate
                      against this CA (PEM); without either, the system's
                      CAs. Files made on this data dir carry the same.

Monitoring and keys (durations like 500ms, 30s, 5m, 1h; a bare number is seconds):
  --poll-interval D   poll every key holder this often (default 30s)
  --evict-after N     polls missed in a row before a member is evicted and
                      the VPN rekeyed without it (default 3)
  --continue-after D  a holder not polled for this long sends "continue"
                      (default 2.5 poll intervals, or evict-after − 0.5
                      when that is less; must be below evict-after ×
                      poll-interval)
  --rekey-period D    rekey each VPN this often, for members that answer
                      polls (default 1h; 0 = only on leave and kagi vpn
                      rekey; kagi vpn add --rekey-period sets one VPN's)
  --timeout D         how long a service waits for an answer (default 10s)
  --ticket-lifetime D how long a resumption ticket lets a device re-join
                      without the password (default 30d; each re-join
                      returns a fresh one)

Bandwidth (embodiment 5; rates like 500kbit, 24mbit, 1gbit):
  --link-capacity RATE  the link the VPNs share; the config server plans
                      per-VPN rates from the VPN table (priority, maximum):
                      higher priorities first, lower ones cut when short.
                      Agents shape their VPN traffic to the plan; cut VPNs'
                      frames are not forwarded by the broker.
  --tc-dev IFACE      also enforce the plan with tc HTB on IFACE's egress
                      (a class per VPN, filters on its protocol/port;
                      --tc-netns runs tc in a namespace). Refuses to start
                      if tc cannot run.
Several instances (scale-out; DESIGN §8, docs/performance.md):
  --instance NAME     run as one of several instances of each service on
                      the same --broker (an MQTT 5 broker such as
                      Mosquitto) and --store postgres://…: requests are
                      shared ($share/G-auth/…, $share/G-config/…, …), one
                      instance at a time holds each duty's lease (polls and
                      leave steps; periodic rekeys) and another takes it
                      over when it dies. NAME must differ per instance (it
                      is in the MQTT client ids).
  --share-group G     the shared subscription groups' prefix (default kagi;
                      two deployments on one broker need different ones)
  --lease-retry D     how often an instance asks for a lease and the holder
                      checks it (default 1s; the longest a duty waits when
                      its holder dies)
Per-device quotas of the embedded broker (docs/decisions.md 102; 0 = no limit).
A device may publish only to the protocol's topics, retained only on its own
state topic, each within its size; anything else closes its connection.
Within that, a publish over a quota is dropped and counted
(kagi_broker_dropped_total{reason}), and a device that stays over is
disconnected (kagi_broker_disconnects_total). The defaults are far above
what an honest agent sends (a relay's rekey burst, a tunnel's 16 KiB chunks):
  --quota-rate N      publishes per second, all topics (default 20000;
                      bursts of 2 s of it)
  --quota-control-rate N  publishes per second to the services' topics
                      (default 100; bursts of 10 s of it)
  --quota-bytes SIZE  payload bytes per second (default 64MiB; bursts of
                      2 s of it)
  --quota-inflight N  QoS 1 publishes acknowledged and not yet delivered
                      (default 1000)
  --quota-retained SIZE  retained bytes held for one device (default 1KiB)
  --quota-over D      dropping this long without a quiet second gets the
                      device disconnected (default 5s)
Operations:
  --metrics-port N    serve Prometheus metrics at http://HOST:N/metrics
                      (connected clients, joins, refusals by reason,
                      rekeys, evictions, frames forwarded and dropped)
  --ui-port N         serve the web console at http://127.0.0.1:N/ (0 = a
                      free port; the URL is in the start line): the fleet
                      live (devices online/offline, each VPN's members,
                      epoch and last rekey, relay ports, planned rate or
                      cut), a page per device, the audit log, recent
                      refusals and evictions, rate charts; and actions
                      (revoke a device, rekey a VPN, grant and revoke a
                      user), audited as the admin who acted. Sign in with
                      kagi admin login ADMIN-FILE --url URL (no password)
  --ui-host H         the console's address (default 127.0.0.1, whatever
                      --host is; it speaks plain HTTP: put a TLS proxy in
                      front to serve it further)
  --ui-session D      how long a console sign-in lasts (default 1h, at most 7d)
  --log-format F      json (one {time, level, msg} object per line; the
                      default when stdout is not a terminal) or text
Stops on SIGINT/SIGTERM.`;

export async function up(args: string[]): Promise<number> {
  const { values: v } = parse(args, { ...DATA_OPTION, host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string' }, broker: { type: 'string' }, verbose: { type: 'boolean', default: false }, services: { type: 'string', default: 'auth,config,keys' }, nftables: { type: 'boolean', default: false }, dynsec: { type: 'string' }, 'dynsec-password-stdin': { type: 'boolean', default: false }, 'nft-netns': { type: 'string' }, 'nft-hook': { type: 'string', default: 'forward' }, 'poll-interval': { type: 'string' }, 'evict-after': { type: 'string' }, 'continue-after': { type: 'string' }, 'rekey-period': { type: 'string' }, 'ticket-lifetime': { type: 'string' }, timeout: { type: 'string' }, 'link-capacity': { type: 'string' }, 'tc-dev': { type: 'string' }, 'tc-netns': { type: 'string' }, 'metrics-port': { type: 'string' }, 'log-format': { type: 'string' }, instance: { type: 'string' }, 'share-group': { type: 'string', default: 'kagi' }, 'lease-retry': { type: 'string' }, 'ui-port': { type: 'string' }, 'ui-host': { type: 'string', default: '127.0.0.1' }, 'ui-session': { type: 'string' }, 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, 'tls-port': { type: 'string' }, 'quota-rate': { type: 'string' }, 'quota-control-rate': { type: 'string' }, 'quota-bytes': { type: 'string' }, 'quota-inflight': { type: 'string' }, 'quota-retained': { type: 'string' }, 'quota-over': { type: 'string' }, ...BROKER_TLS_OPTIONS }, 0);
  const log = logger(logFormat(v['log-format'], process.stdout.isTTY === true), v.verbose);
  const linkCapacity = bitrate(v['link-capacity'], 'link-capacity', 0);
  if (v['tc-dev'] && !linkCapacity) throw new UsageError('--tc-dev needs --link-capacity RATE (the link it shapes)');
  const liveness = {
    pollIntervalMs: duration(v['poll-interval'], 'poll-interval', 30_000),
    evictAfter: int(v['evict-after'], 'evict-after', 3),
    ...(v['continue-after'] ? { continueAfterMs: duration(v['continue-after'], 'continue-after') } : {}),
  };
  try {
    livenessOptions(liveness);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (v['nft-hook'] !== 'forward' && v['nft-hook'] !== 'input') throw new UsageError('--nft-hook must be forward or input');
  if (v.dynsec && (!v.broker || !v['dynsec-password-stdin'])) throw new UsageError('--dynsec needs --broker URL and --dynsec-password-stdin');
  const dynsec = v.dynsec ? { url: v.broker!, username: v.dynsec, password: await readStdinLine(`password of ${v.dynsec}`) } : undefined;
  const services = v.services.split(',').map((x) => x.trim());
  const bad = services.filter((x) => !isService(x));
  if (bad.length) throw new UsageError(`--services: unknown service ${bad.join(', ')} (choose from auth, config, keys)`);
  const instance = instanceOptions(v);
  const tls = tlsOptions(v);
  const brokerTls = v.broker ? brokerFor({ ...v, broker: v.broker, remote: undefined, data: '' }).brokerTls : undefined;
  if (!v.broker && (v['broker-pin'] || v['broker-ca'])) throw new UsageError('--broker-pin and --broker-ca are for --broker mqtts://…; the embedded broker takes --tls-cert and --tls-key');
  if (v['ui-port'] === undefined && v['ui-session'] !== undefined) throw new UsageError('--ui-session needs --ui-port N (the console)');
  const ui = v['ui-port'] === undefined ? undefined : { host: v['ui-host'], port: int(v['ui-port'], 'ui-port'), sessionMs: duration(v['ui-session'], 'ui-session', DEFAULT_SESSION_MS) };
  if (ui && ui.port > 65535) throw new UsageError('--ui-port must be 0..65535');
  if (ui && (ui.sessionMs < 1000 || ui.sessionMs > MAX_SESSION_MS)) throw new UsageError('--ui-session must be 1s..7d');
  const quota = quotaOptions(v);
  let cp;
  try {
    cp = await startControlPlane({
      dataDir: v.data, ...(v.store ? { store: v.store } : {}), crypto: nodeCrypto(), host: v.host, port: int(v.port, 'port', 1883),
      ...(v.broker ? { brokerUrl: v.broker } : {}),
      ...(brokerTls ? { brokerTls } : {}),
      ...(tls ? { tls } : {}),
      services: services as Service[],
      liveness,
      rekeyPeriodMs: duration(v['rekey-period'], 'rekey-period', 3_600_000),
      ticketLifetimeMs: duration(v['ticket-lifetime'], 'ticket-lifetime', DEFAULT_TICKET_LIFETIME_MS),
      timeoutMs: duration(v.timeout, 'timeout', 10_000),
      linkCapacity,
      ...(v['tc-dev'] ? { tc: { dev: v['tc-dev'], ...(v['tc-netns'] ? { netns: v['tc-netns'] } : {}) } } : {}),
      ...(dynsec ? { dynsec } : {}),
      ...(v.nftables ? { nftables: { hook: v['nft-hook'] as 'forward' | 'input', ...(v['nft-netns'] ? { netns: v['nft-netns'] } : {}) } } : {}),
      ...(v['metrics-port'] !== undefined ? { metricsPort: int(v['metrics-port'], 'metrics-port') } : {}),
      ...(instance ? { instance } : {}),
      ...(ui ? { console: ui } : {}),
      quota,
      log,
    });
  } catch (e) {
    if (e instanceof PortInUseError || e instanceof DataDirLockedError || (e instanceof Error && /^(nftables|mosquitto-dynsec|tc):|^(metrics|console) port/.test(e.message))) {
      console.error(`kagi up: ${e.message}`);
      return 1;
    }
    throw e;
  }
  const files = cp.fileBroker;
  const tlsNote = isTlsUrl(files.broker) ? `, devices and admins on ${files.broker} (TLS: ${files.brokerTls?.spkiSha256 ? `public key pin sha256 ${files.brokerTls.spkiSha256.join(', ')}` : describeBrokerTls(files.brokerTls)})` : '';
  log('info', `kagi up: ${instance ? `instance ${instance.name}, ` : ''}broker ${cp.brokerUrl}${tlsNote}, services ${services.join(', ')}, data ${v.data}${v.store ? `, tables in PostgreSQL schema ${parsePostgresUrl(v.store).schema}` : ''}${cp.metricsUrl ? `, metrics ${cp.metricsUrl}` : ''}${cp.consoleUrl ? `, console ${cp.consoleUrl} (sign in: kagi admin login ADMIN-FILE --url ${cp.consoleUrl})` : ''}`);
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  log('info', `kagi up: stopping (${signal}): ${cp.broker ? 'devices on this broker are marked offline, ' : ''}services closing`);
  await cp.close();
  log('info', 'kagi up: stopped');
  return 0;
}

/** --instance and its companions, checked before anything starts. */
function instanceOptions(v: { instance?: string; 'share-group': string; 'lease-retry'?: string; broker?: string; store?: string }): InstanceOptions | undefined {
  if (v.instance === undefined) {
    if (v['lease-retry'] !== undefined) throw new UsageError('--lease-retry needs --instance NAME');
    return undefined;
  }
  const name = /^[A-Za-z0-9_-]{1,32}$/;
  if (!name.test(v.instance)) throw new UsageError('--instance: a name of letters, digits, - and _ (up to 32), different for each instance');
  if (!name.test(v['share-group'])) throw new UsageError('--share-group: letters, digits, - and _ (up to 32)');
  if (!v.broker) throw new UsageError('--instance needs --broker URL: the instances share an external MQTT 5 broker');
  if (!isPostgresUrl(v.store)) throw new UsageError('--instance needs --store postgres://…: the instances share their tables there');
  return { name: v.instance, group: v['share-group'], ...(v['lease-retry'] ? { leaseRetryMs: duration(v['lease-retry'], 'lease-retry') } : {}) };
}

/**
 * --tls-cert, --tls-key, --tls-port: both files read and checked as a pair
 * here, so a wrong path or a key that is not the certificate's is a usage
 * error before anything starts.
 */
function tlsOptions(v: { 'tls-cert'?: string | undefined; 'tls-key'?: string | undefined; 'tls-port'?: string | undefined; broker?: string | undefined }): { cert: string; key: string; port: number } | undefined {
  if (!v['tls-cert'] && !v['tls-key']) {
    if (v['tls-port'] !== undefined) throw new UsageError('--tls-port needs --tls-cert FILE and --tls-key FILE');
    return undefined;
  }
  if (!v['tls-cert'] || !v['tls-key']) throw new UsageError('--tls-cert and --tls-key go together (the certificate and its private key, PEM)');
  if (v.broker) throw new UsageError('--tls-cert is for the embedded broker; with --broker the external broker does TLS (give --broker mqtts://… and --broker-pin or --broker-ca)');
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`--${flag} ${file}: ${(e as Error).message}`);
    }
  };
  const cert = read('tls-cert', v['tls-cert']);
  const key = read('tls-key', v['tls-key']);
  try {
    createSecureContext({ cert, key }); // throws on a bad PEM, or a key that is not the certificate's
  } catch (e) {
    throw new UsageError(`--tls-cert ${v['tls-cert']} with --tls-key ${v['tls-key']}: ${(e as Error).message}`);
  }
  const port = int(v['tls-port'], 'tls-port', 8883);
  if (port < 0 || port > 65535) throw new UsageError(`--tls-port must be 0..65535, not ${port}`);
  return { cert, key, port };
}

/** --quota-*: the embedded broker's per-device quotas (0 = no limit). */
export function quotaOptions(v: Record<string, string | string[] | boolean | undefined>): QuotaLimits {
  const s = (k: string) => v[k] as string | undefined;
  const d = DEFAULT_QUOTA;
  const q: QuotaLimits = {
    publishesPerSecond: int(s('quota-rate'), 'quota-rate', d.publishesPerSecond),
    controlPerSecond: int(s('quota-control-rate'), 'quota-control-rate', d.controlPerSecond),
    bytesPerSecond: byteSize(s('quota-bytes'), 'quota-bytes', d.bytesPerSecond),
    inflight: int(s('quota-inflight'), 'quota-inflight', d.inflight),
    retainedBytes: byteSize(s('quota-retained'), 'quota-retained', d.retainedBytes),
    overForMs: duration(s('quota-over'), 'quota-over', d.overForMs),
  };
  for (const k of ['quota-rate', 'quota-control-rate', 'quota-inflight']) if (s(k)?.trim().startsWith('-')) throw new UsageError(`--${k} must not be negative`);
  if (v.broker && Object.keys(v).some((k) => k.startsWith('quota-') && v[k] !== undefined)) throw new UsageError('--quota-* apply to the embedded broker; with --broker the broker enforces its own limits (docs/decisions.md 105)');
  return q;
}
