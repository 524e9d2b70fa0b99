/**
 * cork-turn.ts on real loopback sockets: a stream corked at its first
 * publish holds what is written to it until the turn of the event loop
 * ends, and goes out then; and under a long turn (a process serving many
 * connections, decision 136) a cork held MAX_CORK_MS is let go at the next
 * publish of any stream of the process, so nothing waits for the turn's
 * end. Time is given to corkTurn here, so the bound is tested without
 * waiting on the clock.
 */
import t, { type Test } from 'tap';
import { createConnection, createServer, type Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { corkTurn, corkedCount, MAX_CORK_MS } from '../../runtime/node/cork-turn.js';
import { until } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';

/** A loopback server; its connections' received bytes, by connection. */
async function server(t: Test): Promise<{ port: number; received: Buffer[][] }> {
  const received: Buffer[][] = [];
  const s = createServer((c) => {
    const got: Buffer[] = [];
    received.push(got);
    c.on('data', (d) => got.push(d));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return { port: (s.address() as { port: number }).port, received };
}

async function connect(t: Test, port: number): Promise<Socket> {
  const c = createConnection({ port, host: '127.0.0.1' });
  await new Promise<void>((r) => c.once('connect', () => r()));
  t.teardown(() => void c.destroy());
  return c;
}

const bytes = (got: Buffer[]) => Buffer.concat(got).toString();

t.test('a stream corked at its first publish goes out when the turn ends', async (t) => {
  await nextTurn();
  const { port, received } = await server(t);
  const s = await connect(t, port);
  t.ok(await until(() => received.length === 1, deadline(5000)), 'the server has the connection');
  corkTurn(s);
  s.write('one ');
  corkTurn(s); // a second publish in the same turn: corked once
  s.write('two');
  t.equal(s.writableCorked, 1, 'corked once for the turn');
  t.equal(s.writableLength, 7, 'both writes held in the stream');
  t.equal(corkedCount(), 1);
  await nextTurn();
  t.equal(s.writableCorked, 0, 'uncorked when the turn ended');
  t.equal(corkedCount(), 0);
  t.ok(await until(() => bytes(received[0]!) === 'one two', deadline(5000)), 'both writes reached the server');
});

t.test('under a long turn a cork held MAX_CORK_MS goes at the next publish of any stream', async (t) => {
  await nextTurn();
  const { port, received } = await server(t);
  const [a, b, c] = [await connect(t, port), await connect(t, port), await connect(t, port)];
  t.ok(await until(() => received.length === 3, deadline(5000)), 'the server has the three connections');
  const t0 = performance.now();
  corkTurn(a, t0);
  a.write('join from a');
  corkTurn(b, t0 + MAX_CORK_MS / 2);
  b.write('join from b');
  t.same([a.writableCorked, b.writableCorked], [1, 1], 'within the bound both wait');
  // Still the same turn, MAX_CORK_MS after a's cork: another stream publishes.
  corkTurn(c, t0 + MAX_CORK_MS);
  c.write('join from c');
  t.same([a.writableCorked, b.writableCorked, c.writableCorked], [0, 0, 1], 'a and b let go, c corked');
  t.same([a.writableLength, b.writableLength], [0, 0], "a's and b's bytes handed to the socket before the turn ends");
  t.equal(c.writableLength, 11, "c's bytes held");
  t.equal(corkedCount(), 1);
  await nextTurn();
  t.equal(c.writableCorked, 0, 'c goes when the turn ends');
  const all = () => received.map(bytes).sort();
  t.ok(await until(() => all().join('|') === 'join from a|join from b|join from c', deadline(5000)), 'every write reached the server once');
});
