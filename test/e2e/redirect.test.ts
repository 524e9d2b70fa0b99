/**
 * A VPN frame names its receiver (issue 19): a broker that re-publishes a
 * frame A sealed for B onto C's topic gets it dropped by C, unopened, and
 * nothing reaches C's application.
 */
import t from 'tap';
import type { PublishPacket } from 'aedes';
import { controlPlane, joinedAgent, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { topics } from '../../protocol/topics.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

t.test('a frame redirected to another member\'s topic is dropped', async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' });
  const got: string[] = [];
  const mk = (id: string, user: string) => joinedAgent(t, cp, id, user, { onData: (_v, f, p) => got.push(`${id}<-${f}:${dec.decode(p)}`) });
  const a = await mk('term-a', 'alice');
  await mk('term-b', 'bob');
  const c = await mk('term-c', 'carol');

  let captured: Uint8Array | undefined;
  cp.broker!.aedes.on('publish', (packet) => {
    if (packet.topic === topics.vpnMember('plant', 'term-b')) captured = new Uint8Array(packet.payload as Buffer);
  });
  await a.send('plant', 'term-b', enc.encode('for b only'));
  t.ok(await until(() => got.includes('term-b<-term-a:for b only') && captured !== undefined), 'b gets its frame');

  const redirected: PublishPacket = { cmd: 'publish', topic: topics.vpnMember('plant', 'term-c'), payload: Buffer.from(captured!), qos: 1, retain: false, dup: false };
  await new Promise<void>((resolve, reject) => cp.broker!.aedes.publish(redirected, (e) => (e ? reject(e) : resolve())));
  t.ok(await until(() => (c.droppedFrames.get('unexpected') ?? 0) === 1), 'c drops the frame sealed for b');
  t.same(got.filter((g) => g.startsWith('term-c')), [], 'and nothing reaches c');
});
