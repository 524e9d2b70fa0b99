/**
 * A join whose answers are lost (decision 130): the agent sends the same
 * request again, byte for byte, while it is valid, so the control plane
 * acts on it once and answers the copies from what it kept. Before, each
 * timeout made a new request carrying the same ticket; the third one
 * acted on read as a copied ticket, and an unattended device lost its
 * tickets in a storm whose queue was longer than two of its waits.
 */
import t from 'tap';
import { agent, controlPlane, device, tempDir, typeOf, vpnWithUsers } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';
import { toHex } from '../../protocol/bytes.js';

t.test('two join answers lost: copies of the one request, one rotation, no theft', async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const bundle = await device(cp, 'term-1');
  let lose = 0;
  const sent: string[] = [];
  const a = agent(bundle, cp.brokerUrl, {
    timeoutMs: deadline(1000),
    spy: (_topic, bytes) => void (typeOf(bytes) === 'join.request' && sent.push(toHex(bytes))),
    lose: (dir, _topic, bytes) => dir === 'in' && typeOf(bytes) === 'join.response' && lose-- > 0,
  });
  t.teardown(() => a.stop());
  await a.start();
  await a.configure();
  await a.join('alice', 'alice-password');
  await a.stop({ leave: false });

  // Back on its ticket, and the first two answers never reach it.
  lose = 2;
  sent.length = 0;
  await a.start();
  const vpns = await a.join('alice');
  t.equal(vpns[0]?.id, 'plant', 'joined on its ticket');
  t.equal(lose, -1, 'after two answers were lost');
  t.equal(sent.length, 3, 'the request went out three times');
  t.equal(new Set(sent).size, 1, 'byte for byte the same: one request, not three');
  t.equal(cp.metrics.value('kagi_tickets_issued_total', { how: 'rotation' }), 1, 'the ticket rotated once');
  t.equal(cp.metrics.value('kagi_ticket_thefts_total'), 0, 'and no copied ticket was seen');
  t.ok(cp.metrics.value('kagi_joins_total') === 2, 'two joins in all: the first, and this one once');

  // The ticket it holds now is the live one: a restart joins on it again.
  await a.stop({ leave: false });
  await a.start();
  t.equal((await a.join('alice'))[0]?.id, 'plant', 'and the next restart joins on the ticket it was given');
  t.equal(cp.metrics.value('kagi_ticket_thefts_total'), 0, 'still no theft');
});
