/**
 * Services in one process answer each other by a call (decision 107): a
 * join through `kagi up`'s three services sends no service request over
 * the broker, and what crosses is a copy, as the wire would give. (Each
 * service in its own process, asked over the broker, is
 * test/e2e/mosquitto.test.ts.)
 */
import t from 'tap';
import { copyBody, LocalServices } from '../../servers/local-services.js';
import { joinedAgent, controlPlane, tempDir, vpnWithUsers } from '../helpers/control-plane.js';
import { topics } from '../../protocol/topics.js';

t.test('a join in one process: no service request crosses the broker', async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const seen: string[] = [];
  cp.broker!.aedes.on('publish', (p) => void seen.push(p.topic));
  await joinedAgent(t, cp, 'term', 'alice');
  t.ok(seen.includes(topics.service('config', 'join')), 'the join request went through the broker (to the config server)');
  t.notOk(seen.some((x) => x === topics.service('auth', 'service') || x === topics.service('keys', 'service')), 'config asked auth and keys by a call');
  t.ok(seen.includes(topics.inbox('term')), 'keys and the answer still go to the device over the broker');
});

t.test('the body crosses as a copy, and an absent service is an error', async (t) => {
  const local = new LocalServices();
  let got: Record<string, unknown> | undefined;
  const answer = { ok: true, key: new Uint8Array([1, 2, 3]) };
  const close = local.open('keys', async (from, body) => ((got = { from, ...body }), answer));
  const asked = { op: 'keys.issue', vpns: ['plant'], raw: new Uint8Array([9]) };
  const r = await local.ask('config', 'keys', asked);
  t.equal(got!.from, 'config', 'the handler is told who asks');
  t.not(got!.raw, asked.raw, 'the handler gets its own bytes');
  t.same(got!.raw, asked.raw, 'with the same content');
  answer.key.fill(0); // a service wiping what it answered
  t.same(r.key, new Uint8Array([1, 2, 3]), 'does not wipe what the asker got');
  t.same(copyBody({ a: [1, { b: 'x' }], c: null }), { a: [1, { b: 'x' }], c: null }, 'arrays, maps and scalars copy as they are');
  close();
  t.notOk(local.has('keys'), 'a closed door is gone');
  await t.rejects(local.ask('config', 'keys', asked), /keys does not run in this process/, 'and asking it fails plainly');
  local.open('auth', async () => undefined);
  await t.rejects(local.ask('config', 'auth', {}), /did not take/, 'a request the service does not take fails like one unanswered');
});
