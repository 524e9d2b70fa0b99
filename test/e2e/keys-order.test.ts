/**
 * Two deliveries to one holder that arrive out of order (two key server
 * instances delivering at once, or a broker that held one back): the holder
 * ends on the channel the key server's book keeps (decision 63), so the
 * next update opens. Here the first delivery of a join (on that join's own
 * keys channel, decision 134) is held back, the join is refused and asked
 * again and acknowledged with a second delivery, and then the held one
 * arrives late: the first join's channel was withdrawn when it ended, so
 * it opens nowhere and takes nothing.
 */
import t from 'tap';
import { controlPlane, device, tempDir, testPlatform, typeOf, until, vpnWithUsers } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';
import { TerminalAgent } from '../../device/terminal.js';
import type { Platform } from '../../device/platform.js';

t.test('a late key delivery of an earlier join does not take the holder off the key server\'s channel', async (t) => {
  const cp = await controlPlane(tempDir(t), { timeoutMs: deadline(2000), rekeyPeriodMs: 0 });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const bundle = await device(cp, 'term-a');

  const held: { topic: string; bytes: Uint8Array }[] = [];
  let holdNextDelivery = false;
  let acks = 0;
  let inject: ((topic: string, bytes: Uint8Array) => void) | undefined;
  const base = testPlatform(cp.brokerUrl);
  const lines: string[] = [];
  const platform: Platform = {
    ...base,
    log: (level, msg) => (lines.push(msg), base.log(level, msg)),
    async connect(l) {
      inject = l.onMessage;
      const link = await base.connect({
        ...l,
        onMessage: (topic, bytes) => {
          if (holdNextDelivery && typeOf(bytes) === 'keys.update') return void ((holdNextDelivery = false), held.push({ topic, bytes }));
          l.onMessage(topic, bytes);
        },
      });
      const send = link.publish.bind(link);
      link.publish = async (topic, bytes, retain) => {
        if (typeOf(bytes) === 'keys.updated') acks++;
        await send(topic, bytes, retain);
      };
      return link;
    },
  };
  // The key server gives up on the held delivery and refuses the join
  // (keys); the agent, which waited on with copies of its request
  // (decision 130), joins again and is delivered to again.
  const a = new TerminalAgent(bundle, platform, { timeoutMs: deadline(1500), attempts: 3 });
  t.teardown(() => a.stop({ leave: false }));
  await a.start();
  await a.configure();
  holdNextDelivery = true;
  await a.join('alice', 'alice-password');
  t.equal(held.length, 1, 'the first delivery was held back');
  t.equal(acks, 1, 'the second was acknowledged');
  t.equal(a.epochs().plant, 1, 'joined at epoch 1');

  const dropped = () => lines.filter((l) => /dropped \(auth\) keys\.update from keys/.test(l)).length;
  inject!(held[0]!.topic, held[0]!.bytes); // arrives late, still valid
  t.ok(await until(() => dropped() === 1, deadline(5000)), 'the late delivery opens under no channel the holder holds: dropped');
  t.equal(acks, 1, 'and not acknowledged');

  await cp.store.setRekeyRequest('plant', Date.now());
  const keyId = async () => (await cp.store.membershipsOf('term-a')).find((m) => m.vpnId === 'plant')?.keyId;
  t.ok(await until(() => a.epochs().plant === 2, deadline(10_000)), 'the rekey\'s update opens at the holder: it kept the newer channel');
  t.ok(await until(async () => (await keyId()) === 2, deadline(10_000)), 'and its acknowledgement moves its key id');
});
