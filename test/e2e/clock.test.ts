/**
 * Requests carry their issue time (issue 19, finding B), end to end: a
 * terminal whose clock is ten minutes off is refused as stale by the auth
 * server (through the config server's front door), takes the time from
 * that refusal, and configures, joins and takes its key delivery; one whose
 * clock is within the skew gets in at the first attempt.
 */
import t from 'tap';
import { controlPlane, device, tempDir, testPlatform, vpnWithUsers, logged } from '../helpers/control-plane.js';
import { TerminalAgent } from '../../device/terminal.js';
import { CLOCK_SKEW_S } from '../../protocol/sealed.js';

t.test('a terminal whose clock is off is told the time and joins; within the skew it is not refused', async (t) => {
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });

  const skewed = (offMs: number) => {
    const p = testPlatform(cp.brokerUrl);
    return { ...p, now: () => Date.now() + offMs };
  };
  const near = new TerminalAgent(await device(cp, 'term-near'), skewed((CLOCK_SKEW_S - 5) * 1000), { timeoutMs: 3000, attempts: 1 });
  t.teardown(() => near.stop({ leave: false }));
  await near.start();
  await near.configure();
  await near.join('bob', 'bob-password');
  t.equal(near.epochs().plant, 1, `${CLOCK_SKEW_S - 5} s ahead: configured and joined with one attempt each`);
  t.same(logged(lines, /refused.*stale|stale.*refused/), [], 'nothing refused as stale');

  const off = new TerminalAgent(await device(cp, 'term-off'), skewed(-600_000), { timeoutMs: 3000, attempts: 1 });
  t.teardown(() => off.stop({ leave: false }));
  await off.start();
  await off.configure();
  t.equal(logged(lines, /refused.*stale/).length, 1, 'ten minutes behind: its first config request was refused as stale');
  await off.join('alice', 'alice-password');
  t.equal(off.epochs().plant, 1, 'then it configured and joined (one attempt each: the stale answer is retried inside it) and took its keys');
  t.equal(logged(lines, /refused.*stale/).length, 1, 'its join went in with the corrected time');
  t.equal((await cp.store.membershipsOf('term-off')).find((m) => m.vpnId === 'plant')?.keyId, 1, 'the key server recorded its acknowledgement');
});
