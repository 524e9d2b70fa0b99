/**
 * Liveness never evicts on the strength of the control plane's own fresh
 * start (docs/architecture.md, Liveness: "Whose polls count"). A second
 * control plane started on the same data dir with its own embedded broker
 * polls every holder through a broker none of them is on: the polls reach
 * nobody, so none of them may count. (The data-dir lock refuses a second
 * `kagi up`, test/cli/operator-safety.test.ts; the rule must hold without
 * it, so this runs at the library level with the lock off.)
 */
import t from 'tap';
import { controlPlane, joinedAgent, logged, tempDir, typeOf, until, vpnWithUsers } from '../helpers/control-plane.js';
import { topics } from '../../protocol/topics.js';
import { deadline } from '../helpers/deadline.js';

// Short, scaled on a busy machine (where the first control plane's own polls could really be missed).
const LIVE = { pollIntervalMs: deadline(200), evictAfter: 2, continueAfterMs: deadline(300) };

t.test('a second control plane whose broker nobody uses evicts nobody', async (t) => {
  const dir = tempDir(t);
  const first: string[] = [];
  const second: string[] = [];
  const cp1 = await controlPlane(dir, { liveness: LIVE, lines: first });
  t.teardown(() => cp1.close());
  await vpnWithUsers(cp1, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const heard: string[] = [];
  const a = await joinedAgent(t, cp1, 'term-a', 'alice', { onLeft: (vpn, reason) => heard.push(`term-a ${vpn}: ${reason}`) });
  const b = await joinedAgent(t, cp1, 'term-b', 'bob', { onLeft: (vpn, reason) => heard.push(`term-b ${vpn}: ${reason}`) });

  const cp2 = await controlPlane(dir, { liveness: LIVE, lines: second, lockDataDir: false });
  t.teardown(() => cp2.close());
  t.not(cp2.brokerUrl, cp1.brokerUrl, 'the second control plane has an embedded broker of its own');
  const polls = new Map<string, number>();
  cp2.broker!.aedes.on('publish', (packet) => {
    if (typeOf(packet.payload as Uint8Array) === 'poll') polls.set(packet.topic, (polls.get(packet.topic) ?? 0) + 1);
  });
  const rounds = LIVE.evictAfter + 3;
  const polled = () => ['term-a', 'term-b'].every((id) => (polls.get(topics.inbox(id)) ?? 0) >= rounds);
  t.ok(await until(polled, 10_000), `the second polled each holder ${rounds} times, through a broker none of them is on`);

  const both = [...first, ...second];
  t.same(logged(second, /missed a poll|evicted/), [], 'the second control plane counted no poll as missed and evicted nobody');
  t.same(logged(both, /evicted/), [], 'nobody was evicted');
  t.same((await cp1.store.members('plant')).map((m) => m.deviceId), ['term-a', 'term-b'], 'both are still members of the VPN');
  t.same(logged(both, /told .* out \(/), [], 'no left notice (evicted, revoked) was sent');
  t.same(heard, [], 'and no agent heard one');
  t.same([a.state, b.state], ['joined', 'joined'], 'both agents are still joined');
  t.same([...(await cp1.store.missedPolls())], [], 'no missed polls on record for anyone');
});
