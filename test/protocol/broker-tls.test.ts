/**
 * The brokerTls field of device files, admin files and broker.json
 * (protocol/broker-tls.ts): every bad value is refused with a message that
 * names the field, and a pin beside a plain mqtt:// broker is refused.
 */
import t from 'tap';
import { BrokerTlsError, describeBrokerTls, normalizePin, parseBrokerTls } from '../../protocol/broker-tls.js';
import { parseBundle } from '../../device/bundle.js';

const PIN = '2cda05d4a35b0e53c31110f5cfa5ffe4b3e53a3013439ab3eccee29f7c8356d9';
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const TLS_URL = 'mqtts://broker.example:8883';

t.test('good values parse', async (t) => {
  t.equal(parseBrokerTls(undefined, TLS_URL), undefined, 'absent: none (the system CAs)');
  t.same(parseBrokerTls({ spkiSha256: [PIN] }, TLS_URL), { spkiSha256: [PIN] }, 'a pin');
  t.same(parseBrokerTls({ spkiSha256: [PIN, PIN.replace(/^2/, '3')] }, TLS_URL)!.spkiSha256!.length, 2, 'two pins (a roll-over)');
  t.same(parseBrokerTls({ ca: PEM }, TLS_URL), { ca: PEM }, 'a CA');
  t.same(parseBrokerTls({ spkiSha256: [PIN], ca: PEM }, TLS_URL), { spkiSha256: [PIN], ca: PEM }, 'both');
  t.match(describeBrokerTls({ spkiSha256: [PIN] }), /public key pinned \(sha256 2cda05d4a35b0e53…\)/, 'described for logs');
});

t.test('every bad value is refused, naming the field', async (t) => {
  const bad: [unknown, string, RegExp][] = [
    [{ spkiSha256: [PIN] }, 'mqtt://broker.example:1883', /only for an mqtts:\/\/ broker; mqtt:\/\/broker\.example:1883 is plain MQTT, so nothing would check it/],
    ['pin', TLS_URL, /brokerTls must be an object/],
    [[PIN], TLS_URL, /brokerTls must be an object/],
    [null, TLS_URL, /brokerTls must be an object/],
    [{}, TLS_URL, /brokerTls must have spkiSha256 or ca/],
    [{ spkiSha256: PIN }, TLS_URL, /spkiSha256 must be a list/],
    [{ spkiSha256: [] }, TLS_URL, /spkiSha256 must be a list/],
    [{ spkiSha256: [PIN.slice(1)] }, TLS_URL, /64 lower-case hex/],
    [{ spkiSha256: [PIN.toUpperCase()] }, TLS_URL, /64 lower-case hex/],
    [{ spkiSha256: [7] }, TLS_URL, /64 lower-case hex/],
    [{ ca: 'not a pem' }, TLS_URL, /brokerTls\.ca must be a PEM certificate/],
    [{ ca: 42 }, TLS_URL, /brokerTls\.ca must be a PEM certificate/],
  ];
  for (const [v, url, re] of bad) t.throws(() => parseBrokerTls(v, url), { name: 'BrokerTlsError', message: re }, `${JSON.stringify(v)} on ${url}`);
});

t.test('pins as people type them', async (t) => {
  t.equal(normalizePin(PIN.toUpperCase()), PIN, 'upper case');
  t.equal(normalizePin(`sha256:${PIN}`), PIN, 'sha256: prefix');
  t.equal(normalizePin(PIN.match(/../g)!.join(':')), PIN, 'colon-separated bytes');
  t.equal(normalizePin(`  ${PIN}\n`), PIN, 'whitespace (pasted from sha256sum)');
  t.throws(() => normalizePin('abc'), BrokerTlsError, 'too short');
  t.throws(() => normalizePin(`${PIN}00`), BrokerTlsError, 'too long');
});

t.test('device files carry it, and a bad one is a bundle error', async (t) => {
  const hex = 'ab'.repeat(32);
  const file = { kagi: 1, id: 'd1', mac: '02:00:00:00:00:01', kind: 'terminal', secretKey: hex, services: { broker: hex, auth: hex, config: hex, keys: hex }, broker: TLS_URL };
  t.equal(parseBundle(file).brokerTls, undefined, 'mqtts:// without brokerTls: none');
  t.same(parseBundle({ ...file, brokerTls: { spkiSha256: [PIN] } }).brokerTls, { spkiSha256: [PIN] }, 'with a pin');
  t.throws(() => parseBundle({ ...file, brokerTls: { spkiSha256: ['x'] } }), { name: 'BundleError', message: /^bundle: brokerTls\.spkiSha256/ }, 'a bad pin');
  t.throws(() => parseBundle({ ...file, broker: 'mqtt://h:1883', brokerTls: { spkiSha256: [PIN] } }), { name: 'BundleError', message: /^bundle: brokerTls is only for an mqtts:\/\/ broker/ }, 'a pin on plain MQTT');
  t.throws(() => parseBundle({ ...file, broker: 'http://h' }), { name: 'BundleError', message: /mqtt:\/\/ or mqtts:\/\/ URL/ }, 'not an MQTT URL');
});
