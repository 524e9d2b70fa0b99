/**
 * Where an admin command runs: on the tables of a local data dir (or the
 * PostgreSQL of --store), or with `--remote admin.json` against a running
 * control plane over the broker. Both take the same operation and
 * arguments (servers/admin-ops.ts) and give the same result, so every
 * command is written once.
 *
 * Remote: the admin file (kagi admin add) holds the operator's identity and
 * private key, the services' public keys and the broker. Each request is
 * an `admin.request` sealed to the config server (HPKE auth mode with the
 * admin key), answered under the request's reply key. The sequence numbers
 * and broker CONNECT counters persist in FILE.state beside the admin file,
 * as an agent's do: one admin file per operator and machine.
 */
import { readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { Peer } from '../protocol/peer.js';
import { topics } from '../protocol/topics.js';
import { asBody } from '../protocol/body.js';
import { fromHex } from '../protocol/bytes.js';
import { isKagiError } from '../protocol/errors.js';
import { ID_PATTERN } from '../protocol/limits.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { openStore } from '../servers/store/open.js';
import { loadServiceKeys, publicKeys, PARTIES, type Party } from '../servers/identity.js';
import { storeRunner, type AdminRunner } from '../servers/admin-ops.js';
import { AdminError } from '../servers/admin.js';
import { DEFAULT_BROKER, recordedBroker, type FileBroker } from '../servers/data-dir.js';
import { BrokerTlsError, isTlsUrl, normalizePin, parseBrokerTls, type BrokerTls } from '../protocol/broker-tls.js';
import type { Link } from '../device/platform.js';
import { DATA_OPTION, UsageError, duration } from './args.js';

/** The control plane did not answer in time (not the request's fault: a batch stops on it). */
export class RemoteSilentError extends AdminError {}

export interface AdminTarget extends AdminRunner {
  close(): Promise<void>;
}

/** Who runs the CLI on a data dir or store, as the audit table names them. */
export const localActor = (): string => `local:${userInfo().username}@${hostname()}`;

export type BrokerAuth = 'counter' | 'static' | 'none';

export interface AdminFile {
  id: string;
  secretKey: Uint8Array;
  services: Record<Party, string>;
  broker: string;
  /** How an mqtts:// broker is checked (protocol/broker-tls.ts). */
  brokerTls?: BrokerTls;
  brokerAuth: BrokerAuth;
}

/** Read and check an admin file; every problem names the file and its field. */
export function readAdminFile(file: string): AdminFile {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`--remote ${file}: ${(e as Error).message}`);
  }
  const bad = (what: string) => new UsageError(`--remote ${file}: not an admin file (${what}); make one with kagi admin add`);
  const hex32 = (v: unknown) => typeof v === 'string' && /^[0-9a-f]{64}$/i.test(v);
  if (j === null || typeof j !== 'object' || j.kagi !== 1) throw bad('kagi must be 1');
  if (typeof j.admin !== 'string' || !ID_PATTERN.test(j.admin)) throw bad('admin must be an id');
  if (!hex32(j.secretKey)) throw bad('secretKey must be 64 hex characters');
  const s = (j.services ?? {}) as Record<string, unknown>;
  for (const p of PARTIES) if (!hex32(s[p])) throw bad(`services.${p} must be 64 hex characters`);
  if (typeof j.broker !== 'string' || !/^mqtts?:\/\//.test(j.broker)) throw bad('broker must be an mqtt:// or mqtts:// URL');
  const brokerAuth = j.brokerAuth ?? 'counter';
  if (brokerAuth !== 'counter' && brokerAuth !== 'static' && brokerAuth !== 'none') throw bad('brokerAuth must be counter, static or none');
  let brokerTls: BrokerTls | undefined;
  try {
    brokerTls = parseBrokerTls(j.brokerTls, j.broker);
  } catch (e) {
    throw bad((e as Error).message);
  }
  return { id: j.admin, secretKey: fromHex(j.secretKey as string), services: s as Record<Party, string>, broker: j.broker, ...(brokerTls ? { brokerTls } : {}), brokerAuth };
}

/** The CLI on a data dir (SQLite and keys.json) or on --store postgres://…. */
export async function localTarget(v: { data: string; store?: string | undefined }): Promise<AdminTarget> {
  // Never made here: only kagi up and kagi init make a store (NoDataError).
  const store = await openStore(v.data, v.store, { create: false });
  let keys: Record<Party, string> | undefined;
  // keys.json is read only when an operation needs the service keys.
  const services = async () => (keys ??= publicKeys(loadServiceKeys(v.data, nodeCrypto(), { create: false })));
  return { ...storeRunner(store, localActor(), services), close: () => store.close() };
}

/** A running control plane, through the broker, as the admin of `file`. */
export async function remoteTarget(file: string, timeoutMs: number): Promise<AdminTarget> {
  const a = readAdminFile(file);
  const platform = nodePlatform({ brokerUrl: a.broker, ...(a.brokerTls ? { brokerTls: a.brokerTls } : {}), stateFile: `${file}.state`, brokerAuth: a.brokerAuth });
  const pk = (p: Party) => fromHex(a.services[p]);
  let link: Link | undefined;
  const peer = new Peer({
    crypto: platform.crypto,
    id: a.id,
    secretKey: a.secretKey,
    numbers: platform.numbers,
    transport: { publish: (t, m) => (link ? link.publish(t, m) : Promise.reject(new Error('not connected'))) },
    keyOf: async (id) => (id === 'config' ? pk('config') : undefined),
    replyTopic: () => topics.service('config', 'reply'),
    // A 'stale' refusal carries the control plane's clock: an admin host
    // whose clock is off corrects it and asks once more.
    timeFrom: (id) => id === 'config',
  });
  try {
    link = await platform.connect({
      clientId: a.id,
      secretKey: a.secretKey,
      brokerPublicKey: pk('broker'),
      subscriptions: [topics.inbox(a.id)],
      onMessage: (_topic, payload) => void peer.receive(payload).catch(() => {}),
    });
  } catch (e) {
    throw new AdminError(`cannot reach the control plane's broker ${a.broker} as admin ${a.id}: ${(e as Error).message}`);
  }
  return {
    async run(op, args = {}) {
      let r;
      try {
        r = await peer.request({ to: 'config', pkR: pk('config'), topic: topics.service('config', 'admin'), type: 'admin.request', body: { op, args }, timeoutMs });
      } catch (e) {
        if (isKagiError(e, 'unexpected')) {
          throw new RemoteSilentError(`no answer from the control plane within ${timeoutMs / 1000} s (is it running on ${a.broker}, and does it know admin ${a.id}?)`);
        }
        throw e;
      }
      r.secrets.destroy();
      if (r.type === 'error') throw new AdminError(`refused by the control plane: ${String(asBody(r.body).reason)}`);
      return asBody(r.body).result ?? null;
    },
    services: async () => a.services,
    close: async () => {
      peer.cancelAll('closing');
      await link?.close();
    },
  };
}

/** `--data DIR [--store URL]` or `--remote FILE [--timeout D]`: where an admin command runs. */
export const TARGET_OPTIONS = { ...DATA_OPTION, remote: { type: 'string' }, timeout: { type: 'string' } } as const;

/** What --help says about TARGET_OPTIONS. */
export const TARGET_HELP = `  --data DIR         control plane data dir (default ./kagi-data)
  --store URL        the tables in PostgreSQL (postgres://…)
  --remote FILE      run it on a running control plane, over its broker, as
                     the admin of FILE (kagi admin add); recorded in the
                     audit table as admin:ID
  --timeout D        how long to wait for the control plane's answer with
                     --remote (default 10s; a bare number is seconds)`;

/** --broker-pin HEX (repeatable) and --broker-ca FILE: how the files made check an mqtts:// broker. */
export const BROKER_TLS_OPTIONS = { 'broker-pin': { type: 'string', multiple: true }, 'broker-ca': { type: 'string' } } as const;

/** What --help says about BROKER_TLS_OPTIONS. */
export const BROKER_TLS_HELP = `  --broker-pin HEX   (mqtts://) pin the broker certificate's public key: the
                     SHA-256 of its SubjectPublicKeyInfo, as kagi up --tls-cert
                     prints it or as openssl x509 -pubkey -noout -in CERT |
                     openssl pkey -pubin -outform der | sha256sum does;
                     repeat for a key roll-over. Default: the pin kagi up
                     recorded on --data (or the --remote file's)
  --broker-ca FILE   (mqtts://) trust only this CA (PEM) for the broker's
                     certificate, and check the URL's host name against it`;

type BrokerTlsFlags = { 'broker-pin'?: string[] | undefined; 'broker-ca'?: string | undefined };

/** The brokerTls the flags name, if they name one. */
function brokerTlsFlags(v: BrokerTlsFlags): BrokerTls | undefined {
  const out: BrokerTls = {};
  try {
    if (v['broker-pin']?.length) out.spkiSha256 = v['broker-pin'].map(normalizePin);
  } catch (e) {
    throw new UsageError(`--broker-pin: ${(e as Error).message}`);
  }
  if (v['broker-ca'] !== undefined) {
    let pem: string;
    try {
      pem = readFileSync(v['broker-ca'], 'utf8');
    } catch (e) {
      throw new UsageError(`--broker-ca ${v['broker-ca']}: ${(e as Error).message}`);
    }
    try {
      out.ca = parseBrokerTls({ ca: pem }, 'mqtts://x')!.ca!;
    } catch (e) {
      throw new UsageError(`--broker-ca ${v['broker-ca']}: ${e instanceof BrokerTlsError ? 'not a PEM certificate (-----BEGIN CERTIFICATE-----)' : (e as Error).message}`);
    }
  }
  return out.spkiSha256 || out.ca ? out : undefined;
}

/**
 * The broker to write into a device or admin file: --broker if given, else
 * the --remote admin file's, else the one kagi up last served on --data
 * (data-dir.ts), else MQTT's own port on this host. Its brokerTls: the
 * --broker-pin/--broker-ca flags, else that of the file or record the URL
 * came from; an mqtts:// --broker without flags takes the recorded pin (the
 * same broker under the name others reach it by, decision 84), and a
 * broker that is not that one is then refused by every agent, loudly.
 */
export function brokerFor(v: { broker?: string | undefined; remote?: string | undefined; data: string } & BrokerTlsFlags): FileBroker {
  const flags = brokerTlsFlags(v);
  const known = (): FileBroker | undefined => (v.remote ? readAdminFile(v.remote) : v.data ? recordedBroker(v.data) : undefined);
  let b: FileBroker;
  if (v.broker !== undefined) {
    if (!/^mqtts?:\/\/[^/\s]+/.test(v.broker)) throw new UsageError(`--broker must be a URL like mqtt://host:1883 or mqtts://host:8883, not '${v.broker}'`);
    const recorded = isTlsUrl(v.broker) && !flags ? known()?.brokerTls : undefined;
    b = { broker: v.broker, ...(recorded ? { brokerTls: recorded } : {}) };
  } else {
    const k = known() ?? { broker: DEFAULT_BROKER };
    b = { broker: k.broker, ...(k.brokerTls ? { brokerTls: k.brokerTls } : {}) };
  }
  if (flags) {
    if (!isTlsUrl(b.broker)) throw new UsageError(`--broker-pin and --broker-ca are for an mqtts:// broker; ${b.broker} is plain MQTT (give --broker mqtts://HOST:PORT)`);
    b.brokerTls = flags;
  }
  return b;
}

/** Run `fn` on the target the options name, and close it. */
export async function withTarget<T>(v: { data: string; store?: string | undefined; remote?: string | undefined; timeout?: string | undefined }, fn: (t: AdminTarget) => Promise<T>): Promise<T> {
  if (v.remote && v.store) throw new UsageError('--remote and --store name two places: give one');
  if (v.timeout && !v.remote) throw new UsageError('--timeout is for --remote');
  const t = v.remote ? await remoteTarget(v.remote, duration(v.timeout, 'timeout', 10_000)) : await localTarget(v);
  try {
    return await fn(t);
  } finally {
    await t.close();
  }
}
