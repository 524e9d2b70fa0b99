/**
 * MQTT over TLS on Node: the socket MQTT.js speaks through when a broker
 * URL is mqtts://, checked against the file's brokerTls
 * (protocol/broker-tls.ts) before MQTT.js's CONNECT leaves this host.
 *
 * Node checks the chain and then the host name (checkServerIdentity) only
 * when the chain verifies, so a pin on a self-signed certificate cannot
 * live in checkServerIdentity: the pin is checked on 'secureConnect',
 * which Node emits before it flushes anything written earlier (MQTT.js
 * writes CONNECT at once), and a mismatch destroys the socket there.
 * test/e2e/tls.test.ts shows a broker with the wrong key receives no byte
 * of application data.
 */
import { connect as tlsConnect, createSecureContext, type TLSSocket } from 'node:tls';
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import type { BrokerTls } from '../../protocol/broker-tls.js';

/** The error code of a pin mismatch: a string code, so MQTT.js emits the stream error (it drops errors without one). */
export const PIN_MISMATCH = 'KAGI_BROKER_PIN_MISMATCH';

export class BrokerPinError extends Error {
  override readonly name = 'BrokerPinError';
  readonly code = PIN_MISMATCH;
}

/** SHA-256 of a certificate's SubjectPublicKeyInfo (DER), lower-case hex: the pin of brokerTls.spkiSha256. */
export function spkiSha256(certPem: string | Buffer): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('hex');
}

/** The first certificate of a PEM chain file (the leaf, by convention). */
export function leafCertificate(chainPem: string): string {
  const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(chainPem);
  if (!m) throw new Error('no PEM certificate (-----BEGIN CERTIFICATE-----) in it');
  return m[0];
}

/** Is this a failure of the broker's identity (pin, chain, name), not of the network? Such errors are worth a warning each time. */
export function isIdentityError(e: { code?: unknown }): boolean {
  return typeof e.code === 'string' && (e.code === PIN_MISMATCH || /CERT|SELF_SIGNED|ERR_TLS_CERT_ALTNAME|UNABLE_TO_(GET|VERIFY)/.test(e.code));
}

function pinMatches(pins: string[], got: string | undefined): boolean {
  if (!got) return false;
  // Not a secret, but there is no reason to compare it any other way.
  const g = Buffer.from(got, 'hex');
  return pins.some((p) => timingSafeEqual(Buffer.from(p, 'hex'), g));
}

/**
 * A builder of TLS sockets to `url` (MQTT.js calls it for every connection
 * attempt), each checked against `tls`.
 */
export function brokerTlsStream(url: URL, tls: BrokerTls | undefined, localAddress?: string): () => TLSSocket {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 8883);
  const pins = tls?.spkiSha256;
  // One context for every attempt: making one loads the CA store each time
  // (a millisecond of CPU per connect in bench/tls.ts's profile).
  const secureContext = createSecureContext({ ...(tls?.ca ? { ca: tls.ca } : {}), minVersion: 'TLSv1.2' });
  return () => {
    const sock = tlsConnect({
      host, port, secureContext,
      // SNI takes names only (RFC 6066 §3).
      ...(isIP(host) ? {} : { servername: host }),
      ...(localAddress ? { localAddress } : {}),
      // A pin alone is the whole trust (the certificate may be self-signed);
      // with a CA, or with nothing given, the chain and the name must verify.
      rejectUnauthorized: !pins || tls?.ca !== undefined,
    });
    sock.setNoDelay(true); // CONNECT and the handshake's last flight are small: no Nagle wait
    if (pins) {
      sock.once('secureConnect', () => {
        const cert = sock.getPeerCertificate();
        const got = cert?.raw ? spkiSha256(cert.raw) : undefined;
        if (!pinMatches(pins, got)) {
          sock.destroy(new BrokerPinError(`the broker's certificate does not match the pin in this file: its public key has SHA-256 ${got ?? '(none: no certificate)'}, the file pins ${pins.join(' or ')} (a wrong broker, someone in between, or a new broker key: kagi device/admin set-broker with --broker-pin)`));
        }
      });
    }
    return sock;
  };
}
