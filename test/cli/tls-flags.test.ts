/**
 * The TLS flags of the CLI: kagi up --tls-cert/--tls-key/--tls-port,
 * --broker-pin/--broker-ca on the commands that write device and admin
 * files. Bad input is refused with a message naming the flag, before
 * anything starts or is written.
 */
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kagiIn } from '../helpers/cli.js';
import { kagiDataDir, tempDir } from '../helpers/control-plane.js';
import { haveOpenssl, makeCa, OPENSSL_SKIP } from '../helpers/tls.js';
import { recordBroker } from '../../servers/data-dir.js';

const PIN = '2cda05d4a35b0e53c31110f5cfa5ffe4b3e53a3013439ab3eccee29f7c8356d9';

t.test('kagi up refuses bad TLS flags before it starts', { skip: haveOpenssl ? false : OPENSSL_SKIP }, async (t) => {
  const dir = tempDir(t);
  const good = makeCa(dir, 'good');
  const other = makeCa(dir, 'other');
  const data = join(dir, 'data');
  const up = (args: string[]) => kagiIn(['up', '--data', data, '--port', '0', ...args]);
  const cases: [string[], RegExp][] = [
    [['--tls-cert', good.certFile], /--tls-cert and --tls-key go together/],
    [['--tls-key', good.keyFile], /--tls-cert and --tls-key go together/],
    [['--tls-port', '8883'], /--tls-port needs --tls-cert FILE and --tls-key FILE/],
    [['--tls-cert', join(dir, 'nope.pem'), '--tls-key', good.keyFile], /--tls-cert .*nope\.pem: ENOENT/],
    [['--tls-cert', good.certFile, '--tls-key', other.keyFile], /--tls-cert .* with --tls-key .*: .*key values mismatch/],
    [['--tls-cert', good.certFile, '--tls-key', good.keyFile, '--tls-port', '70000'], /--tls-port must be 0\.\.65535/],
    [['--tls-cert', good.certFile, '--tls-key', good.keyFile, '--broker', 'mqtts://h:8883'], /--tls-cert is for the embedded broker/],
    [['--broker-pin', PIN], /--broker-pin and --broker-ca are for --broker mqtts:/],
    [['--broker', 'mqtt://127.0.0.1:1', '--broker-pin', PIN], /are for an mqtts:\/\/ broker; mqtt:\/\/127\.0\.0\.1:1 is plain MQTT/],
    [['--broker', 'mqtts://127.0.0.1:1', '--broker-pin', 'abc'], /--broker-pin: .*64 hex characters, not 'abc'/],
    [['--broker', 'mqtts://127.0.0.1:1', '--broker-ca', good.keyFile], /--broker-ca .*: not a PEM certificate/],
  ];
  for (const [args, re] of cases) {
    const r = await up(args);
    t.equal(r.code, 2, `${args.join(' ')}: a usage error`);
    t.match(r.stderr, re, 'that says what is wrong');
  }
  t.notOk(existsSync(data), 'and nothing was started or made');
  const help = await kagiIn(['up', '--help']);
  t.match(help.stdout, /--tls-cert FILE .*--tls-port/s, 'kagi up --help names the TLS flags');
});

t.test('device and admin files: the recorded pin, flags that replace it, set-broker that keeps it', async (t) => {
  const data = kagiDataDir(t);
  const run = (args: string[]) => kagiIn([...args, '--data', data]);
  recordBroker(data, { broker: 'mqtts://10.0.0.1:8883', brokerTls: { spkiSha256: [PIN] } }); // as kagi up --tls-cert leaves it
  const f = (n: string) => join(data, n);
  const json = (n: string) => JSON.parse(readFileSync(f(n), 'utf8')) as { broker: string; brokerTls?: unknown };

  t.equal((await run(['device', 'add', 'd1', '--mac', '02:00:00:00:23:01', '--out', f('d1.json')])).code, 0, 'device add with no flags');
  t.same([json('d1.json').broker, json('d1.json').brokerTls], ['mqtts://10.0.0.1:8883', { spkiSha256: [PIN] }], 'takes the recorded broker and pin');
  t.equal((await run(['device', 'add', 'd2', '--mac', '02:00:00:00:23:02', '--out', f('d2.json'), '--broker', 'mqtts://plant.example:8883'])).code, 0, 'device add --broker mqtts://another-name');
  t.same(json('d2.json').brokerTls, { spkiSha256: [PIN] }, 'the same broker under another name keeps the recorded pin');
  const other = PIN.replace(/^2/, 'f');
  t.equal((await run(['device', 'add', 'd3', '--mac', '02:00:00:00:23:03', '--out', f('d3.json'), '--broker', 'mqtts://x:8883', '--broker-pin', `sha256:${other.toUpperCase()}`])).code, 0, 'device add --broker-pin');
  t.same(json('d3.json').brokerTls, { spkiSha256: [other] }, 'the flag replaces it (normalised)');
  t.equal((await run(['device', 'add', 'd4', '--mac', '02:00:00:00:23:04', '--out', f('d4.json'), '--broker', 'mqtt://127.0.0.1:1883'])).code, 0, 'device add --broker mqtt://');
  t.same([json('d4.json').broker, json('d4.json').brokerTls], ['mqtt://127.0.0.1:1883', undefined], 'plain MQTT: no pin, as before');
  const bad = await run(['device', 'add', 'd5', '--mac', '02:00:00:00:23:05', '--out', f('d5.json'), '--broker', 'mqtt://h:1883', '--broker-pin', PIN]);
  t.equal(bad.code, 2, 'a pin for a plain broker is refused');
  t.match(bad.stderr, /--broker-pin and --broker-ca are for an mqtts:\/\/ broker/, 'saying why');
  t.notOk(existsSync(f('d5.json')), 'and no file is written');

  t.equal((await kagiIn(['device', 'set-broker', f('d1.json'), 'mqtts://10.0.0.2:8883'])).code, 0, 'set-broker to another mqtts address');
  t.same(json('d1.json').brokerTls, { spkiSha256: [PIN] }, 'keeps the file\'s pin');
  t.equal((await kagiIn(['device', 'set-broker', f('d1.json'), 'mqtt://10.0.0.2:1883'])).code, 0, 'set-broker to plain MQTT');
  t.equal(json('d1.json').brokerTls, undefined, 'drops the pin (it could not be checked)');

  t.equal((await run(['admin', 'add', 'ops', '--out', f('ops.json')])).code, 0, 'admin add');
  t.same(json('ops.json').brokerTls, { spkiSha256: [PIN] }, 'the admin file carries the pin too');
  writeFileSync(f('ops-bad.json'), JSON.stringify({ ...json('ops.json'), brokerTls: { spkiSha256: ['nope'] } }));
  const r = await kagiIn(['status', '--remote', f('ops-bad.json')]);
  t.equal(r.code, 2, 'an admin file with a bad pin is refused');
  t.match(r.stderr, /not an admin file \(brokerTls\.spkiSha256 must be a list of SHA-256 pins/, 'naming the field');
  for (const cmd of [['device', '--help'], ['admin', '--help'], ['provision', '--help'], ['agent', '--help']]) {
    t.match((await kagiIn(cmd)).stdout, cmd[0] === 'agent' ? /mqtts:\/\/ one is\s+still checked/ : /--broker-pin HEX/, `kagi ${cmd.join(' ')} says how TLS is checked`);
  }
});
