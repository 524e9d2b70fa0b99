/**
 * An agent's liveness clock (decisions 129 and 133): it sleeps while no
 * continue could go (an agent waiting to join holds no keys), rather than
 * looking again four times a second, and once the agent holds keys and is
 * not polled, it wakes and sends its continue.
 */
import t from 'tap';
import { agent, controlPlane, device, tempDir, typeOf, until, vpnWithUsers } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('the liveness clock sleeps while its agent waits to join, and runs once it holds keys', async (t) => {
  // Polls a minute apart: none comes during the test, so a continue is due 400 ms after each answer.
  const cp = await controlPlane(tempDir(t), { liveness: { pollIntervalMs: 60_000, evictAfter: 3, continueAfterMs: 400 } });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const sent: string[] = [];
  const a = agent(await device(cp, 'term-w'), cp.brokerUrl, { spy: (_topic, bytes) => sent.push(typeOf(bytes) ?? '?') });
  t.teardown(() => a.stop());
  await a.start();
  await a.configure(); // its config channel, its liveness parameters; no keys yet
  const before = a.clockWakes;
  await sleep(1500); // what is measured is that nothing happens in this while
  const woke = a.clockWakes - before;
  t.ok(woke <= 2, `configured and not joined, its clock woke ${woke} times in 1.5 s (it looked every 250 ms before: 6)`);
  t.notOk(sent.includes('continue'), 'and sent no continue: it holds nothing');
  await a.join('alice', 'alice-password');
  t.ok(await until(() => sent.includes('continue'), deadline(5000)), 'joined, holding keys and not polled: the clock woke and sent a continue');
});
