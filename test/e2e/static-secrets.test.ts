/**
 * An agent keeps its static secrets across restarts (decision 124): the
 * first boot computes its X25519 with the broker, auth and keys and keeps
 * them, sealed, in its secret store (FILE.tickets); a restart from its
 * files takes them and computes none, on the real embedded broker; kept
 * secrets that do not open are computed again and kept anew, and the
 * agent joins all the same.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlPlane, crypto, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';
import { addDevice } from '../../servers/admin.js';
import { parseBundle } from '../../device/bundle.js';
import { TerminalAgent } from '../../device/terminal.js';
import { STATIC_SECRETS } from '../../device/session.js';
import { nodePlatform } from '../../runtime/node/platform.js';
import { nodePrimitives } from '../../runtime/node/crypto.js';
import { JsonFile } from '../../runtime/node/json-file.js';
import { toHex } from '../../protocol/bytes.js';

t.test('a restart takes the kept static secrets; kept secrets that do not open are computed again', async (t) => {
  const data = tempDir(t);
  const cp = await controlPlane(data);
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  // The device file as written: each boot parses it again (fresh key arrays, a fresh Crypto), as a restart does.
  const deviceFile = JSON.stringify(await addDevice(cp.store, cp.keys, crypto, { id: 'term-s', mac: '02:00:00:00:24:01', kind: 'terminal', broker: cp.brokerUrl }));
  const first = parseBundle(JSON.parse(deviceFile));
  const services = Object.values(first.services).map(toHex);
  const dir = tempDir(t);
  const ticketsFile = join(dir, 'term-s.json.tickets');

  // Count the X25519 the node backend is asked for with the device's own
  // static key against a service's static key (those kept), and of the
  // device's public key; restored at the end.
  const own = toHex(first.secretKey);
  const count = { statics: 0, base: 0 };
  const { x25519, x25519Base } = nodePrimitives;
  nodePrimitives.x25519 = (k, u, once) => {
    if (toHex(k) === own && services.includes(toHex(u))) count.statics++;
    return x25519(k, u, once);
  };
  nodePrimitives.x25519Base = (k) => {
    if (toHex(k) === own) count.base++;
    return x25519Base(k);
  };
  t.teardown(() => Object.assign(nodePrimitives, { x25519, x25519Base }));

  const lines: string[] = [];
  const boot = async (password?: string) => {
    count.statics = count.base = 0;
    const platform = nodePlatform({ brokerUrl: cp.brokerUrl, stateFile: join(dir, 'term-s.json.state'), secretsFile: ticketsFile, log: (level, msg) => lines.push(`${level}: ${msg}`) });
    const a = new TerminalAgent(parseBundle(JSON.parse(deviceFile)), platform, { timeoutMs: deadline(5000), attempts: 3 });
    await a.start();
    await a.join('alice', password);
    t.equal(a.epochs().plant, 1, 'joined, holding the VPN key');
    // The keeping is a write of its own after the join: wait for it to land before the power cut.
    t.ok(await until(() => readFileSync(ticketsFile, 'utf8').includes(`"${STATIC_SECRETS}"`), 5000), 'the secrets are kept in FILE.tickets');
    await a.stop({ leave: false });
    return { ...count };
  };
  const kept = () => JsonFile.read<Record<string, string>>(ticketsFile)![STATIC_SECRETS];

  const firstBoot = await boot('alice-password');
  // Not with keys: a join's keys come on the join's own keys channel (decision 134).
  t.ok(firstBoot.statics >= 2, `the first boot computes its secrets with the broker and auth (${firstBoot.statics})`);
  t.equal(firstBoot.base, 1, 'and its public key once');
  const file = readFileSync(ticketsFile, 'utf8');
  for (const s of Object.values(first.services)) t.notOk(file.includes(toHex(crypto.dh(first.secretKey, s))), 'no secret is in the file in the clear');

  const blob = kept();
  t.same(await boot(), { statics: 0, base: 0 }, 'a restart on its ticket computes none of them');
  t.equal(kept(), blob, 'and writes nothing new');

  // A kept blob that does not open (a corrupted file): computed again, kept anew.
  const bad = blob!.slice(0, -2) + (blob!.endsWith('00') ? '01' : '00');
  // Written as the plain JSON of earlier versions, which the agent still reads (decision 131).
  writeFileSync(ticketsFile, JSON.stringify({ ...JsonFile.read<Record<string, string>>(ticketsFile), [STATIC_SECRETS]: bad }));
  const third = await boot();
  t.ok(third.statics >= 2 && third.base === 1, `kept secrets that do not open are computed again (${third.statics}, ${third.base})`);
  t.ok(lines.some((l) => /kept static secrets did not open: computing them again/.test(l)), 'and the agent says so');
  t.ok(await until(() => kept() !== bad, 5000), 'and keeps them anew');
  t.same(await boot(), { statics: 0, base: 0 }, 'which the next restart takes');
});
