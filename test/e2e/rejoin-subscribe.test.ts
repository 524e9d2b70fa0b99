/**
 * A restarted terminal subscribes its last join's VPNs in its CONNECT's
 * SUBSCRIBE (decision 137): its re-join on a ticket then sends no
 * SUBSCRIBE of its own, and frames to it and to all arrive. A kept list
 * the broker refuses in part (a VPN it is not a member of) costs only
 * that saving: the join's SUBSCRIBE goes out as before. A member that
 * left starts with its inbox alone. Real embedded broker, real files.
 */
import t from 'tap';
import { join } from 'node:path';
import { agent, controlPlane, device, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';
import { TerminalAgent } from '../../device/terminal.js';
import { nodePlatform } from '../../runtime/node/platform.js';
import { FileSecretStore } from '../../runtime/node/file-secrets.js';
import { topics } from '../../protocol/topics.js';
import { encode } from '../../protocol/cbor.js';
import type { Bundle } from '../../device/bundle.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

t.test('a re-join on a ticket after a restart sends no SUBSCRIBE of its own', async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  const b: Bundle = await device(cp, 'term-r');
  const peer = agent(await device(cp, 'term-p'), cp.brokerUrl);
  t.teardown(() => peer.stop({ leave: false }));
  await peer.start();
  await peer.configure();
  await peer.join('bob', 'bob-password');

  // Every SUBSCRIBE packet term-r's connections send, as the broker saw them.
  const packets: string[][] = [];
  cp.broker!.aedes.on('subscribe', (subs, client) => client?.id === 'term-r' && packets.push(subs.map((s) => s.topic)));
  const dir = tempDir(t);
  const files = { stateFile: join(dir, 'term-r.json.state'), secretsFile: join(dir, 'term-r.json.tickets') };
  const got: string[] = [];
  const boot = () => new TerminalAgent(b, nodePlatform({ brokerUrl: cp.brokerUrl, ...files }), { timeoutMs: deadline(3000), attempts: 2, onData: (_v, from, p) => got.push(`${from}:${dec.decode(p)}`) });
  const inbox = topics.inbox('term-r');
  const plant = [topics.vpnMember('plant', 'term-r'), topics.vpnAll('plant')];

  const first = boot();
  await first.start();
  await first.configure();
  await first.join('alice', 'alice-password');
  t.same(packets, [[inbox], plant], 'first boot: the inbox at connect, the VPN after the join');
  await first.stop({ leave: false }); // power lost: no leave

  packets.length = 0;
  const second = boot();
  t.teardown(() => second.stop({ leave: false }));
  await second.start();
  t.equal(second.needsConfig('alice'), false, 'holding a ticket, it re-joins without a config request');
  await second.join('alice');
  t.equal(second.state, 'joined', 're-joined on its ticket');
  t.same(packets, [[inbox, ...plant]], 'restart: one SUBSCRIBE, at connect, with the VPN in it; none after the join');
  await peer.send('plant', 'term-r', enc.encode('to r'));
  await peer.send('plant', 'all', enc.encode('to all'));
  t.ok(await until(() => got.length >= 2, deadline(5000)), 'frames arrive');
  t.same(got.sort(), ['term-p:to all', 'term-p:to r'], 'frames to it and to all arrive on the subscriptions made at connect');
  await second.stop({ leave: false });

  // A kept list naming a VPN it is not a member of: the broker refuses
  // that topic at connect, so the join subscribes plant again itself.
  await new FileSecretStore(files.secretsFile).set('joined-vpns', encode(['plant', 'gone']));
  packets.length = 0;
  got.length = 0;
  const third = boot();
  t.teardown(() => third.stop({ leave: false }));
  await third.start();
  await third.join('alice');
  const gone = [topics.vpnMember('gone', 'term-r'), topics.vpnAll('gone')];
  t.same(packets, [[inbox, ...plant, ...gone], plant], 'a refused topic at connect: the join sends its own SUBSCRIBE, as before');
  await peer.send('plant', 'term-r', enc.encode('again'));
  t.ok(await until(() => got.includes('term-p:again'), deadline(5000)), 'and frames arrive');

  // Leaving empties the list: the next start subscribes its inbox alone.
  await third.stop({ leave: true });
  packets.length = 0;
  const fourth = boot();
  t.teardown(() => fourth.stop({ leave: false }));
  await fourth.start();
  t.ok(await until(() => packets.length > 0, deadline(5000)), 'connected and subscribed');
  t.same(packets, [[inbox]], 'after a leave: the inbox alone at connect');
});
