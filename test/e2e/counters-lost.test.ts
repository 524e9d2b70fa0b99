/**
 * A key holder that lost its counters (a board with storage none, a wiped
 * state file, a reflashed device) on the same identity: it joins again and
 * then takes a rekey. Its counters to the key server restart at 1, so it
 * needs a keys channel it never used (a fresh one per delivery) and a
 * replay window that belongs to that channel (issue 19, finding A); its
 * counters to the broker and the auth server restart at 1 too, in a new
 * era, so its first CONNECT and first requests are taken (decision 62).
 */
import t from 'tap';
import { agent, controlPlane, device, logged, tempDir, testPlatform, until, vpnWithUsers } from '../helpers/control-plane.js';
import { TerminalAgent } from '../../device/terminal.js';
import { equalCT } from '../../protocol/bytes.js';

t.test('a holder whose counters were reset joins again and converges on the next rekey', async (t) => {
  const data = tempDir(t);
  const lines: string[] = [];
  const cp = await controlPlane(data, { timeoutMs: 3000, rekeyPeriodMs: 0, lines }); // no periodic rekeys; requests checked every 100 ms
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const bundle = await device(cp, 'term-a');
  const first = agent(bundle, cp.brokerUrl);
  await first.start();
  await first.configure();
  await first.join('alice', 'alice-password');
  const b = agent(await device(cp, 'term-b'), cp.brokerUrl);
  t.teardown(() => b.stop({ leave: false }));
  await b.start();
  await b.configure();
  await b.join('bob', 'bob-password');
  // A history with the key server longer than the rejoin's attempts: its
  // acknowledgements used seqs 1..REKEYS + 1, which a window per sender
  // would refuse to the reset holder for as many attempts.
  const REKEYS = 6;
  const keyId = async (id: string) => (await cp.store.membershipsOf(id)).find((m) => m.vpnId === 'plant')?.keyId;
  for (let epoch = 2; epoch <= REKEYS + 1; epoch++) {
    await cp.store.setRekeyRequest('plant', Date.now());
    t.ok(await until(async () => (await keyId('term-a')) === epoch && (await keyId('term-b')) === epoch, 10_000), `before the reset: epoch ${epoch} acknowledged`);
  }
  const channel1 = (await cp.store.channels('keys').get('term-a'))!;
  t.ok(channel1, 'the key server keeps a keys channel with term-a');
  await first.stop({ leave: false }); // power cut: no leave

  // The same identity with fresh counters, the broker's CONNECT counter
  // included (and, as on a board, fresh channels).
  const platform = testPlatform(cp.brokerUrl);
  t.equal(await platform.numbers.get('tx:term-a:keys'), undefined, 'no counter to the key server survives');
  t.equal(await platform.numbers.get('connect:term-a:broker'), undefined, 'nor to the broker');
  const refusalsBefore = cp.broker!.refusals.length;
  // One attempt each: the reset device is taken at once, in its new era.
  const again = new TerminalAgent(bundle, platform, { timeoutMs: 3000, attempts: 1 });
  t.teardown(() => again.stop({ leave: false }));
  await again.start();
  t.equal(cp.broker!.refusals.length, refusalsBefore, 'its first CONNECT is accepted');
  await again.configure();
  await again.join('alice', 'alice-password');
  t.equal(again.epochs().plant, REKEYS + 1, `joined again at the first attempt, at epoch ${REKEYS + 1}`);
  t.same(logged(lines, /replay/i), [], 'no replay refusal in the control plane\'s log');
  const channel2 = (await cp.store.channels('keys').get('term-a'))!;
  t.notOk(equalCT(channel1.send, channel2.send) || equalCT(channel1.recv, channel2.recv), 'the new delivery gave a new keys channel, both directions');

  await cp.store.setRekeyRequest('plant', Date.now());
  const next = REKEYS + 2;
  t.ok(await until(() => again.epochs().plant === next && b.epochs().plant === next, 10_000), 'the rekey reaches the reset holder');
  t.ok(await until(async () => (await keyId('term-a')) === next, 10_000), `and it acknowledged: its key id in the VPN table moved to epoch ${next}`);
});
