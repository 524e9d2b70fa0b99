/**
 * The device file ("bundle") made by `kagi device add`: the device's
 * identity and private key, the services' public keys, and for app servers
 * preset user credentials so they join by themselves.
 */
import { fromHex } from '../protocol/bytes.js';
import { ID_PATTERN, MAC_PATTERN } from '../protocol/limits.js';
import { BrokerTlsError, parseBrokerTls, type BrokerTls } from '../protocol/broker-tls.js';

export { MAC_PATTERN }; // its home is protocol/limits.ts, shared with servers/

export interface Bundle {
  id: string;
  mac: string;
  kind: 'terminal' | 'relay' | 'plaintext' | 'external';
  secretKey: Uint8Array;
  services: { broker: Uint8Array; auth: Uint8Array; config: Uint8Array; keys: Uint8Array };
  broker: string;
  /** How an mqtts:// broker is checked: a pin of its key or its CA (protocol/broker-tls.ts). */
  brokerTls?: BrokerTls;
  /** Preset credentials (app servers join automatically). */
  user?: string;
  password?: string;
}

export class BundleError extends Error {
  override readonly name = 'BundleError';
}

function hex32(v: unknown, field: string): Uint8Array {
  if (typeof v !== 'string' || !/^[0-9a-f]{64}$/i.test(v)) throw new BundleError(`bundle: ${field} must be 64 hex characters`);
  return fromHex(v);
}

/** Parse and check a bundle; every problem names its field. */
export function parseBundle(json: unknown): Bundle {
  const b = json as Record<string, unknown>;
  if (typeof b !== 'object' || b === null) throw new BundleError('bundle: not a JSON object');
  if (b.kagi !== 1) throw new BundleError('bundle: kagi must be 1 (bundle format version)');
  if (typeof b.id !== 'string' || !ID_PATTERN.test(b.id)) throw new BundleError('bundle: id must match [A-Za-z0-9._:-]{1,64}');
  if (typeof b.mac !== 'string' || !MAC_PATTERN.test(b.mac)) throw new BundleError('bundle: mac must look like 02:00:00:00:00:01');
  if (!['terminal', 'relay', 'plaintext', 'external'].includes(b.kind as string)) throw new BundleError('bundle: kind must be terminal, relay, plaintext or external');
  if (typeof b.broker !== 'string' || !/^mqtts?:\/\//.test(b.broker)) throw new BundleError('bundle: broker must be an mqtt:// or mqtts:// URL');
  const s = (b.services ?? {}) as Record<string, unknown>;
  const out: Bundle = {
    id: b.id,
    mac: b.mac,
    kind: b.kind as Bundle['kind'],
    secretKey: hex32(b.secretKey, 'secretKey'),
    services: { broker: hex32(s.broker, 'services.broker'), auth: hex32(s.auth, 'services.auth'), config: hex32(s.config, 'services.config'), keys: hex32(s.keys, 'services.keys') },
    broker: b.broker,
  };
  try {
    const tls = parseBrokerTls(b.brokerTls, b.broker);
    if (tls) out.brokerTls = tls;
  } catch (e) {
    if (e instanceof BrokerTlsError) throw new BundleError(`bundle: ${e.message}`);
    throw e;
  }
  if (b.user !== undefined) {
    if (typeof b.user !== 'string' || typeof b.password !== 'string') throw new BundleError('bundle: user and password go together, as strings');
    out.user = b.user;
    out.password = b.password;
  }
  return out;
}
