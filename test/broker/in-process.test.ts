/**
 * The services beside the embedded broker reach it without a socket
 * (broker/in-process.ts, decision 132): the stream pair on its own, and a
 * control plane whose services are connected while the broker's TCP port
 * has no connection at all, and which a device then joins through.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { duplexPair } from '../../broker/in-process.js';
import { agent, controlPlane, device, tempDir, vpnWithUsers } from '../helpers/control-plane.js';

const ss = spawnSync('ss', ['-V']).status === 0;
const SS_SKIP = 'ss (iproute2) is not installed: the in-process broker test needs it to count the broker port\'s connections';
if (!ss) console.error(`\n*** ${SS_SKIP} ***\n`);

t.test('a pair: what one end writes the other reads, in order, never inside the write', async (t) => {
  const [a, b] = duplexPair();
  const got: string[] = [];
  b.on('data', (d: Buffer) => got.push(d.toString()));
  a.write('one');
  a.cork();
  a.write('two');
  a.write('three');
  a.uncork();
  t.same(got, [], 'nothing arrives inside the writer\'s call');
  await new Promise((r) => setImmediate(r));
  t.equal(got.join(''), 'onetwothree', 'it arrives on a later tick, in order (a corked batch as one piece)');
  b.write('back');
  const [d] = (await once(a, 'data')) as [Buffer];
  t.equal(d.toString(), 'back', 'and the other way');
  a.end();
  await once(b, 'end');
  t.pass('one end ending ends the other');
  const [c, e] = duplexPair();
  c.destroy();
  await once(e, 'close');
  t.ok(e.destroyed, 'one end destroyed destroys the other');
});

t.test('a pair holds a writer back while its reader does not read', async (t) => {
  const [a, b] = duplexPair();
  let written = 0;
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < 16; i++) a.write(chunk, () => written++);
  await new Promise((r) => setTimeout(r, 50));
  t.ok(written < 16, `unread, not every write is done (${written} of 16)`);
  let read = 0;
  b.on('data', (d: Buffer) => (read += d.length));
  await new Promise<void>((r) => {
    const check = () => (written === 16 ? r() : setImmediate(check));
    check();
  });
  t.equal(written, 16, 'once it reads, every write is done');
  t.equal(read, 16 * chunk.length, 'and every byte arrived');
});

t.test('the services beside the embedded broker hold no TCP connection to it; a device joins through them', { skip: ss ? false : SS_SKIP }, async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const port = new URL(cp.brokerUrl).port;
  const established = () => spawnSync('ss', ['-tnH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' }).stdout.trim();
  t.equal(established(), '', 'no connection to the broker port while auth, config and keys are up');
  const a = agent(await device(cp, 'term-i'), cp.brokerUrl);
  t.teardown(() => a.stop());
  await a.start();
  await a.configure();
  await a.join('alice', 'alice-password');
  t.equal(a.epochs().plant, 1, 'a device joined, answered by config and auth, keyed by keys');
  t.equal(established().split('\n').length, 1, 'and its own is the only connection on the port');
});
