/**
 * `kagi why` (issue 24) against a running control plane on the embedded
 * broker, with real agents: refusals the auth server gives them (recorded
 * by the auth server as they happen), each liveness state of a member whose
 * answers are lost (ACTIVE, MISSING n of M, EVICTED), a relay port whose
 * relay went away, and a VPN cut by the bandwidth plan: each time the
 * marked step and its hint, through the CLI on the data dir and over
 * --remote. Every refusal code's hint is checked in test/servers/why.test.ts.
 */
import t from 'tap';
import { join } from 'node:path';
import { agent, controlPlane, device, joinedAgent, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { kagiIn } from '../helpers/cli.js';
import { plain, startRelay } from '../helpers/relay.js';
import { addUser, addVpn, grant } from '../../servers/admin.js';
import { topics } from '../../protocol/topics.js';
import type { WhyResult } from '../../servers/why/explain.js';

async function why(args: string[]): Promise<WhyResult> {
  const r = await kagiIn(['why', ...args, '--json']);
  if (r.code !== 0) throw new Error(`kagi why ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as WhyResult;
}

const stepOf = (r: WhyResult, name: string, vpn: string) => r.vpns.find((p) => p.vpn === vpn)!.steps.find((s) => s.step === name)!;

t.test('refusals, a relay port and a cut VPN (default liveness)', async (t) => {
  const data = tempDir(t);
  const lines: string[] = [];
  const cp = await controlPlane(data, { linkCapacity: 1_000_000, lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  await addUser(cp.store, 'mallory', 'mallory-password'); // granted nothing
  const local = (...a: string[]) => why([...a, '--data', data]);

  t.test('refusals the auth server gave a real agent', async (t) => {
    const sent: { topic: string; bytes: Uint8Array }[] = [];
    let publish!: (topic: string, bytes: Uint8Array) => Promise<void>;
    const a = agent(await device(cp, 'term-p'), cp.brokerUrl, { spy: (topic, bytes, send) => (sent.push({ topic, bytes }), (publish = send)) });
    t.teardown(() => a.stop({ leave: false }));
    await a.start();
    await a.configure();

    await t.rejects(a.join('alice', 'not-her-password'), { code: 'password' }, 'a wrong password');
    let r = await local('term-p', 'plant');
    t.match(r.marked, { vpn: null, step: 'authentication', evidence: /refused .*: password \(wrong user id or password\)/, hint: /restart the agent \(kagi agent term-p\.json --user alice --password-stdin\) with the right password/ }, 'password: marked, restart with --password-stdin');

    await t.rejects(a.join('mallory', 'mallory-password'), { code: 'no-vpn' }, 'a user granted nothing');
    r = await local('term-p', 'plant');
    t.match(r.marked, { step: 'authentication', evidence: /no-vpn/, hint: 'user mallory is granted no VPN: kagi vpn grant plant mallory' }, 'no-vpn: the grant command');

    await a.join('alice', 'alice-password');
    r = await local('term-p', 'plant');
    t.equal(r.marked, null, 'joined: nothing fails');
    t.match(stepOf(r, 'liveness', 'plant'), { verdict: 'ok', evidence: /ACTIVE: member of plant holding key epoch \d+/ }, 'an ACTIVE member');
    t.match(r.steps.find((s) => s.step === 'user'), { verdict: 'ok', evidence: 'joined as alice; alice is granted plant' }, 'the user it joined as and its grants');

    const joinMsg = sent.filter((s) => s.topic === topics.service('config', 'join')).at(-1)!;
    const beforeReplay = await cp.store.deviceHistory('term-p');
    const refusals = () => cp.metrics.value('kagi_refusals_total', { reason: 'replay' });
    const counted = refusals();
    const answeredAgain = () => lines.some((l) => /config: join\.request from term-p again: its answer sent again/.test(l));
    await publish(joinMsg.topic, joinMsg.bytes); // the same sealed join again: anyone who saw it can send it
    // The first answer again (kept a minute, decision 113), or the auth server's replay refusal.
    t.ok(await until(async () => answeredAgain() || refusals() > counted), 'the replay is answered with the first answer, or refused');
    t.same(await cp.store.deviceHistory('term-p'), beforeReplay, 'and records nothing: a replay changes no table (issue 23), so it cannot hide the last real verdict');
    r = await local('term-p', 'plant');
    t.equal(r.marked, null, 'kagi why still says the joined member is fine');

    const m = agent({ ...(await device(cp, 'term-m')), mac: '02:99:99:99:99:99' }, cp.brokerUrl);
    t.teardown(() => m.stop({ leave: false }));
    await m.start();
    await t.rejects(m.configure(), { code: 'mac' }, 'a MAC that is not the registered one');
    t.match((await local('term-m')).marked, { step: 'authentication', evidence: /mac \(MAC 02:99:99:99:99:99 does not match device term-m\)/, hint: /fix the mac in its file/ }, 'mac: marked');
  });

  t.test('a relay port: FORWARDING, then the relay is gone', async (t) => {
    const { relay, bound } = await startRelay(t, cp, 'relay-1');
    const p1 = await plain(t, cp, 'plc-1', 'relay-1', 'p1', bound.p1!);
    await p1.p.configure();
    await p1.p.join('bob', 'bob-password');
    let r = await local('plc-1', 'plant');
    t.match(stepOf(r, 'relay-port', 'plant'), { verdict: 'ok', evidence: 'relay port relay-1/p1 is FORWARDING: plc-1 holds keys for plant' }, 'FORWARDING');
    t.match(stepOf(r, 'network', 'plant').evidence, /broker ACL \(embedded broker\): relay-1 may publish kagi\/v1\/vpn\/plant\/plc-1/, 'the relay is the MQTT principal of its terminal');
    await relay.stop({ leave: false }); // a power cut: its terminals stay members
    t.ok(await until(async () => (await cp.store.presence()).get('relay-1')?.online === false), 'the relay is offline');
    r = await local('plc-1', 'plant');
    t.match(r.marked, { vpn: 'plant', step: 'relay-port', evidence: /relay-1\/p1 is FORWARDING in the tables, but the relay relay-1 is offline since/, hint: /start the relay: kagi agent relay-1\.json/ }, 'relay port: marked, start the relay');
  });

  t.test('a VPN cut by the bandwidth plan', async (t) => {
    await addVpn(cp.store, { id: 'alarms', protocol: 'udp', port: 5030, priority: 10, maxBandwidth: 1_000_000 });
    await addVpn(cp.store, { id: 'video', protocol: 'udp', port: 5040, priority: 0, maxBandwidth: 1_000_000 });
    await grant(cp.store, 'alarms', 'alice');
    await grant(cp.store, 'video', 'alice');
    await joinedAgent(t, cp, 'term-c', 'alice');
    t.ok(await until(async () => (await cp.store.getVpn('video'))?.flag === 1), 'the plan cuts video');
    const r = await local('term-c', 'video');
    t.match(r.marked, {
      vpn: 'video', step: 'bandwidth',
      evidence: /video is CUT by the bandwidth plan at priority 0: the link goes to higher priorities first: alarms \(priority 10, 1 mbit\/s\)/,
      hint: /kagi vpn set video --priority 11/,
    }, 'cut: marked, by which priority, and how to lift it');
    const all = await local('term-c');
    t.same(all.vpns.map((p) => p.vpn), ['alarms', 'plant', 'video'], 'without a VPN: every VPN its user is granted');
    t.match(stepOf(all, 'bandwidth', 'alarms'), { verdict: 'ok', evidence: /alarms may send 1 mbit\/s/ }, 'the VPN above it has its rate');
    const text = await kagiIn(['why', 'term-c', 'video', '--data', data]);
    t.match(text.stdout, /^> FAIL bandwidth +video is CUT/m, 'text: the marked step with >');
    t.match(text.stdout, /-> raise its priority \(kagi vpn set video --priority 11\)/, 'text: its hint');
    t.match(text.stdout, /first to fix: bandwidth \(video\): raise its priority/, 'text: the first thing to fix');
  });

  t.test('bad input', async (t) => {
    const r = await kagiIn(['why', '--data', data]);
    t.equal(r.code, 2, 'no device: usage error');
    t.match(r.stderr, /expected 1 to 2 arguments, got 0/, 'says what it expects');
    t.equal((await kagiIn(['why', 'a', 'b', 'c', '--data', data])).code, 2, 'three arguments: usage error');
    t.match((await kagiIn(['why', 'bad id!', '--data', data])).stderr, /'bad id!' is not an id/, 'a bad id is named');
    t.match((await kagiIn(['why', 'x', '--evict-after', '0', '--data', data])).stderr, /--evict-after must be a positive/, 'a bad --evict-after');
    t.match((await kagiIn(['why', '--help'])).stdout, /usage: kagi why DEVICE \[VPN\]/, '--help');
  });
});

t.test('liveness: ACTIVE, MISSING n of M, EVICTED, here and over --remote', async (t) => {
  const data = tempDir(t);
  const cp = await controlPlane(data, { liveness: { pollIntervalMs: 300, evictAfter: 4 } });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const adminFile = join(data, 'ops.json');
  t.equal((await kagiIn(['admin', 'add', 'ops', '--out', adminFile, '--broker', cp.brokerUrl, '--data', data])).code, 0, 'an admin for --remote');
  let mute = false;
  await joinedAgent(t, cp, 'term-l', 'alice', { lose: (dir, topic) => mute && dir === 'out' && topic.includes('/svc/') });

  let r = await why(['term-l', 'plant', '--remote', adminFile]);
  t.equal(r.marked, null, 'ACTIVE over --remote: nothing fails');
  t.match(stepOf(r, 'liveness', 'plant').evidence, /^ACTIVE: member of plant/, 'ACTIVE');
  t.match(stepOf(r, 'network', 'plant').evidence, /^broker ACL: term-l may publish/, 'over --remote the drivers the control plane runs (no nftables, no dynsec here)');
  t.notMatch(stepOf(r, 'network', 'plant').evidence, /nftables|dynsec/, 'and only those');

  mute = true; // its poll replies and continues are lost from now on
  t.ok(await until(async () => ((await cp.store.missedPolls()).get('term-l') ?? 0) >= 1, 5000), 'it misses a poll');
  r = await why(['term-l', 'plant', '--remote', adminFile]);
  t.match(r.marked, { vpn: 'plant', step: 'liveness', evidence: /^MISSING: member of plant .* missed [1-3] of 4 polls \(a poll every 0\.3 s\)/, hint: /the agent has not answered polls: .* evicted after [1-3] more missed poll/ }, 'MISSING n of M (M from the control plane)');

  t.ok(await until(async () => (await cp.store.membershipsOf('term-l')).length === 0, 8000), 'it is evicted');
  t.ok(await until(async () => (await cp.store.deviceHistory('term-l')).eviction !== null), 'the eviction is recorded');
  const remote = await why(['term-l', 'plant', '--remote', adminFile]);
  r = await why(['term-l', 'plant', '--data', data, '--evict-after', '4']);
  t.match(r.marked, { vpn: 'plant', step: 'liveness', evidence: /^EVICTED from plant \S+ \(4 polls missed\)/, hint: /an evicted agent joins again by itself/ }, 'EVICTED: when, why, and what happens next');
  // Times aside: the agent may reconnect (a new "online since") between the two reads.
  const untimed = (x: unknown) => JSON.parse(JSON.stringify(x).replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, 'TIME')) as unknown;
  t.same(untimed(remote), untimed(r), 'the same answer over --remote as on the data dir');
  t.match(stepOf(r, 'network', 'plant'), { verdict: 'info', evidence: /hold nothing for it: not a member/ }, 'the network devices hold nothing for an evicted member');
});
