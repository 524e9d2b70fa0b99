/**
 * How a device, admin or service knows its broker over TLS: the `brokerTls`
 * field of device files, admin files and broker.json.
 *
 *   "broker": "mqtts://plant.example:8883",
 *   "brokerTls": { "spkiSha256": ["2cda05…"] }          // and/or
 *   "brokerTls": { "ca": "-----BEGIN CERTIFICATE-----…" }
 *
 * - spkiSha256: SHA-256 of the broker certificate's SubjectPublicKeyInfo
 *   (DER), as HPKP pinned it (RFC 7469 §2.4) and as `openssl x509 -pubkey
 *   -noout -in cert.pem | openssl pkey -pubin -outform der | sha256sum`
 *   prints it; lower-case hex. The certificate may be self-signed: the pin
 *   is the trust. Several pins let a key roll over (the next one ready).
 * - ca: the PEM of the CA that signed the broker's certificate; the chain
 *   and the host name in the URL are checked against it alone.
 * - both: both are checked. Neither (an mqtts:// URL without brokerTls):
 *   the host's own CA store and the host name, as a browser would.
 *
 * Only the parsing lives here (files are read on every side); the check
 * itself is the host's TLS (runtime/node/broker-tls.ts on Node; a board's
 * host bridge terminates TLS itself: docs/boards.md).
 */

export interface BrokerTls {
  /** Pinned SHA-256 of the certificate's public key (SPKI DER), lower-case hex. */
  spkiSha256?: string[];
  /** PEM of the CA that signed the broker's certificate. */
  ca?: string;
}

export class BrokerTlsError extends Error {
  override readonly name = 'BrokerTlsError';
}

const PIN = /^[0-9a-f]{64}$/;
const PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** A pin as a person may type it: hex with or without colons, any case, optionally `sha256:`/`sha256/`. */
export function normalizePin(text: string): string {
  const hex = text.trim().replace(/^sha256[:/]/i, '').replace(/:/g, '').toLowerCase();
  if (!PIN.test(hex)) throw new BrokerTlsError(`a broker pin is the SHA-256 of the certificate's public key: 64 hex characters, not '${text}'`);
  return hex;
}

/** Does this URL speak MQTT over TLS? */
export const isTlsUrl = (url: string): boolean => /^mqtts:\/\//i.test(url);

/**
 * Check `brokerTls` against the broker URL it belongs to; every problem
 * names the field. A pin beside a plain mqtt:// URL is refused: it would
 * never be checked, and the file would look safer than it is.
 */
export function parseBrokerTls(v: unknown, broker: string): BrokerTls | undefined {
  if (v === undefined) return undefined;
  if (!isTlsUrl(broker)) throw new BrokerTlsError(`brokerTls is only for an mqtts:// broker; ${broker} is plain MQTT, so nothing would check it`);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BrokerTlsError('brokerTls must be an object with spkiSha256 and/or ca');
  const o = v as Record<string, unknown>;
  const out: BrokerTls = {};
  if (o.spkiSha256 !== undefined) {
    if (!Array.isArray(o.spkiSha256) || o.spkiSha256.length === 0 || !o.spkiSha256.every((p) => typeof p === 'string' && PIN.test(p))) {
      throw new BrokerTlsError('brokerTls.spkiSha256 must be a list of SHA-256 pins, 64 lower-case hex characters each');
    }
    out.spkiSha256 = [...(o.spkiSha256 as string[])];
  }
  if (o.ca !== undefined) {
    if (typeof o.ca !== 'string' || !PEM.test(o.ca)) throw new BrokerTlsError('brokerTls.ca must be a PEM certificate (-----BEGIN CERTIFICATE-----)');
    out.ca = o.ca;
  }
  if (!out.spkiSha256 && !out.ca) throw new BrokerTlsError('brokerTls must have spkiSha256 or ca');
  return out;
}

/** What a log line says about how a broker is checked. */
export function describeBrokerTls(t: BrokerTls | undefined): string {
  if (!t) return 'the system CA store';
  return [t.spkiSha256 ? `public key pinned (sha256 ${t.spkiSha256.map((p) => p.slice(0, 16) + '…').join(', ')})` : '', t.ca ? 'its CA' : ''].filter(Boolean).join(' and ');
}
