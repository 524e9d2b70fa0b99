/**
 * explainDevice (servers/why/explain.ts) on a real SQLite store (and the
 * liveness steps on PostgreSQL too, which skips loudly if absent): for every
 * refusal the auth server can give (and the config server's `keys`), the
 * authentication step is the marked one, with that code's hint; and the
 * steps whose state is set by hand here because no test can wait for it
 * (a revoked relay, a MISSING count of a given size). The same states
 * reached by real agents, relays and a real bandwidth plan are in
 * test/e2e/why.test.ts.
 */
import t, { type Test } from 'tap';
import { kagiDataDir, crypto } from '../helpers/control-plane.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { addDevice, addUser, addVpn, grant, revokeDevice } from '../../servers/admin.js';
import { loadServiceKeys } from '../../servers/identity.js';
import { REFUSAL_CODES } from '../../servers/auth/auth.js';
import { REFUSAL_HINTS, refusalHint } from '../../servers/why/refusal-hints.js';
import { explainDevice, type WhyResult } from '../../servers/why/explain.js';
import { PgStore } from '../../servers/store/postgres.js';
import type { Store } from '../../servers/store/store.js';
import { postgresMissing, postgresSchema } from '../helpers/postgres.js';

const noPostgres = await postgresMissing();

const stepOf = (r: WhyResult, name: string, vpn?: string) => (vpn ? r.vpns.find((p) => p.vpn === vpn)!.steps : r.steps).find((s) => s.step === name)!;

async function fleet(t: Test, engine: 'sqlite' | 'postgres' = 'sqlite') {
  const data = kagiDataDir(t);
  const s: Store = engine === 'sqlite' ? new SqliteStore(data) : await PgStore.open(postgresSchema(t));
  t.teardown(() => s.close());
  const keys = loadServiceKeys(data, crypto);
  let n = 0;
  const add = (id: string, kind: 'terminal' | 'relay' | 'plaintext' = 'terminal', relay?: string) =>
    addDevice(s, keys, crypto, { id, mac: `02:00:00:00:77:${(++n).toString(16).padStart(2, '0')}`, kind, broker: 'mqtt://127.0.0.1:1', ...(relay ? { relay, port: 'p2' } : {}) });
  await addVpn(s, { id: 'plant', protocol: 'tcp', port: 5020 });
  await addUser(s, 'alice', 'alice-password', 'scrypt$16384$8$1$00$00');
  await grant(s, 'plant', 'alice');
  return { s, add };
}

t.test('every refusal code has a hint, and marks the authentication step with it', async (t) => {
  const { s, add } = await fleet(t);
  await add('term-a');
  const codes = [...REFUSAL_CODES, 'keys'];
  t.same(Object.keys(REFUSAL_HINTS).sort(), [...codes].sort(), 'one hint per refusal code the servers give, no more');
  let at = 1_000_000;
  for (const code of codes) {
    await s.noteAuth('term-a', at++, 'config');
    await s.noteRefusal('term-a', { at: at++, code, reason: `the ${code} reason`, user: 'alice' });
    const r = await explainDevice(s, 'term-a', 'plant');
    const auth = stepOf(r, 'authentication');
    t.match(auth, { verdict: 'fail', marked: true }, `${code}: the authentication step is marked`);
    t.match(auth.evidence, new RegExp(`refused .*: ${code} \\(the ${code} reason\\)`), `${code}: the evidence names the code, reason and time`);
    t.equal(auth.hint, refusalHint(code, { device: 'term-a', user: 'alice', vpn: 'plant', relay: null }), `${code}: its hint`);
    t.same(r.marked, { vpn: null, step: 'authentication', evidence: auth.evidence, hint: auth.hint }, `${code}: the result's marked step`);
  }
  await s.noteRefusal('term-a', { at: at++, code: 'no-vpn', reason: 'user alice is not a member of any VPN', user: 'alice' });
  t.match(stepOf(await explainDevice(s, 'term-a'), 'authentication').hint, /kagi vpn grant VPN alice/, 'no-vpn without a VPN asked: the hint says VPN');
  await s.noteRefusal('term-a', { at: at++, code: 'keys', reason: 'key distribution failed', user: 'alice' });
  await s.noteAuth('term-a', at++, 'join');
  const after = stepOf(await explainDevice(s, 'term-a', 'plant'), 'authentication');
  t.match(after, { verdict: 'ok', marked: false }, 'an authentication after the refusal: the step passes');
  t.match(after.evidence, /last authenticated .* \(join\); last refused .*: keys/, 'and still shows the older refusal');
  t.match(refusalHint('made-up', { device: 'd', user: null, vpn: null, relay: null }), /refused 'made-up'/, 'a code this kagi does not know still gets a hint');
});

t.test('device, user, grant and VPN steps', async (t) => {
  const { s, add } = await fleet(t);
  let r = await explainDevice(s, 'ghost');
  t.match(r.marked, { step: 'device', hint: /kagi device add ghost --mac MAC/ }, 'an unknown device: register it');
  await add('term-r');
  await revokeDevice(s, 'term-r');
  t.match((await explainDevice(s, 'term-r')).marked, { step: 'device', evidence: /revoked/, hint: /revoked for good/ }, 'a revoked device');
  await add('term-n');
  r = await explainDevice(s, 'term-n', 'plant');
  t.match(r.marked, { step: 'authentication', evidence: /never authenticated/, hint: /kagi agent term-n\.json --user USER --password-stdin/ }, 'never authenticated: start the agent');
  await s.noteAuth('term-n', 1, 'config');
  t.match((await explainDevice(s, 'term-n', 'plant')).marked, { step: 'user', evidence: /has not joined as any user/ }, 'configured, never joined');
  await s.setJoinedAs('term-n', 'alice', 2);
  await s.noteAuth('term-n', 2, 'join');
  r = await explainDevice(s, 'term-n', 'nope');
  t.match(r.marked, { vpn: 'nope', step: 'vpn', hint: 'kagi vpn add nope --protocol tcp --port PORT' }, 'a VPN that does not exist');
  await addVpn(s, { id: 'line', protocol: 'udp', port: 9100 });
  r = await explainDevice(s, 'term-n', 'line');
  t.match(r.marked, { vpn: 'line', step: 'grant', hint: 'kagi vpn grant line alice' }, 'a VPN the user is not granted: the grant command');
  r = await explainDevice(s, 'term-n');
  t.same(r.vpns.map((p) => p.vpn), ['plant'], 'no VPN asked: every VPN its user is granted');
  t.match(r.marked, { vpn: 'plant', step: 'liveness', evidence: /not a member of plant/ }, 'granted but not joined: not a member');
  t.match(stepOf(r, 'vpn', 'plant').evidence, /no session key yet/, 'the VPN step: no key before its first join');
  await s.putSessionKey({ vpnId: 'plant', epoch: 7, key: new Uint8Array(32), createdAt: Date.UTC(2026, 11, 6, 8) });
  t.match(stepOf(await explainDevice(s, 'term-n'), 'vpn', 'plant').evidence, /key epoch 7 since 2026-12-06T08:00:00\.000Z/, 'then its current epoch and when it was made (the last rekey)');
});

for (const engine of ['sqlite', 'postgres'] as const) t.test(`liveness from the tables: ACTIVE, MISSING n of M, EVICTED (${engine})`, { skip: engine === 'postgres' ? (noPostgres ?? false) : false }, async (t) => {
  const { s, add } = await fleet(t, engine);
  await add('term-l');
  await s.noteAuth('term-l', 1, 'join');
  await s.setJoinedAs('term-l', 'alice', 1);
  await s.putNetworkInfo({ deviceId: 'term-l', address: '127.0.0.1', relayId: null, relayPort: null, updatedAt: 1 });
  await s.putMember({ vpnId: 'plant', deviceId: 'term-l', userId: 'alice', keyId: 4, networkId: '127.0.0.1' });
  let r = await explainDevice(s, 'term-l', 'plant', { evictAfter: 5, pollIntervalMs: 30_000, drivers: ['broker-acl', 'nftables', 'mosquitto-dynsec'] });
  t.match(stepOf(r, 'liveness', 'plant'), { verdict: 'ok', evidence: /ACTIVE: member of plant holding key epoch 4/ }, 'ACTIVE');
  t.match(stepOf(r, 'network', 'plant').evidence, /broker ACL: term-l may publish kagi\/v1\/vpn\/plant\/term-l .*nftables: set vpn_plant_[0-9a-f]{8}_v4 holds 127\.0\.0\.1; dynsec: client term-l holds roles kagi-vpn-plant and kagi-member-plant-term-l/, 'what each network device holds');
  t.equal(r.marked, null, 'nothing fails');
  await s.setCommunicating('term-l', false, 2, 2);
  r = await explainDevice(s, 'term-l', 'plant', { evictAfter: 5, pollIntervalMs: 30_000 });
  t.match(r.marked, { step: 'liveness', evidence: /MISSING: .* missed 2 of 5 polls \(a poll every 30 s\)/, hint: /evicted after 3 more missed poll/ }, 'MISSING 2 of 5, and how many are left');
  await s.removeMember('plant', 'term-l', 'evicted');
  await s.noteEviction('term-l', 3, ['plant'], '5 polls missed');
  r = await explainDevice(s, 'term-l', 'plant');
  t.match(r.marked, { step: 'liveness', evidence: /EVICTED from plant 1970-01-01T00:00:00\.003Z \(5 polls missed\)/, hint: /joins again by itself/ }, 'EVICTED, when and why');
});

t.test('relay port: RESTRICTED because the relay is revoked', async (t) => {
  const { s, add } = await fleet(t);
  await add('relay-1', 'relay');
  await add('plc-1', 'plaintext', 'relay-1');
  await s.noteAuth('plc-1', 1, 'join');
  await s.putMember({ vpnId: 'plant', deviceId: 'plc-1', userId: 'alice', keyId: 1, networkId: 'relay-1:p2' });
  t.match(stepOf(await explainDevice(s, 'plc-1', 'plant'), 'relay-port', 'plant'), { verdict: 'ok', evidence: /relay port relay-1\/p2 is FORWARDING: plc-1 holds keys for plant/ }, 'FORWARDING');
  await revokeDevice(s, 'relay-1');
  t.match((await explainDevice(s, 'plc-1', 'plant')).marked, { step: 'relay-port', evidence: /RESTRICTED because the relay relay-1 is revoked/, hint: /bind the terminal to another relay's port/ }, 'RESTRICTED: the relay is revoked');
});
