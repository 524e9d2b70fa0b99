/**
 * The config server's admission places (decision 128) on a real control
 * plane: requests beyond them wait in line (kagi_requests_waiting shows
 * how many), none is lost, and the line is empty once they are through.
 */
import t from 'tap';
import { agent, controlPlane, device, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';

t.test('twelve devices at once through one admission place: they wait in line, and all get in', async (t) => {
  const cp = await controlPlane(tempDir(t), { admitted: 1 });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const agents = [];
  for (let i = 0; i < 12; i++) {
    const a = agent(await device(cp, `term-${i}`), cp.brokerUrl, { timeoutMs: deadline(10_000) });
    t.teardown(() => a.stop());
    await a.start();
    agents.push(a);
  }
  let most = 0;
  const configured = Promise.all(agents.map((a) => a.configure()));
  t.ok(await until(() => (most = Math.max(most, cp.metrics.value('kagi_requests_waiting'))) > 0, 10_000), 'config requests waited for the place');
  await configured;
  t.equal(cp.metrics.value('kagi_requests_waiting'), 0, 'none waits once all are configured');
  // On tickets: no password check to step aside for, so each holds the
  // place up to its keys going out, one after another.
  const joined = await Promise.all(agents.map((a) => a.join('alice', 'alice-password')));
  t.ok(joined.every((v) => v[0]?.id === 'plant'), 'all twelve joined');
  // A power cut: every agent stops (no leave) and starts again, on its ticket.
  await Promise.all(agents.map((a) => a.stop({ leave: false })));
  await Promise.all(agents.map((a) => a.start()));
  const rejoined = Promise.all(agents.map((a) => a.join('alice')));
  t.ok(await until(() => cp.metrics.value('kagi_requests_waiting') > 0, 10_000), 'ticket re-joins waited for the place');
  t.ok((await rejoined).every((v) => v[0]?.id === 'plant'), 'and all twelve are back on their tickets');
  t.equal(cp.metrics.value('kagi_requests_waiting'), 0, 'the line is empty again');
  t.equal(cp.metrics.value('kagi_joins_total'), 24, 'every join counted once: none lost or made twice');
});
