/**
 * Streams while the link is down (issue 18): sends fail, nothing rejects at
 * the caller, items are held and retransmitted once the link is back; past
 * the hold deadline the stream is aborted; abortAll ends every stream.
 * Two muxes wired back to back through a link that can be cut, on a
 * hand-driven clock.
 */
import t from 'tap';
import { StreamMux, type Stream } from '../../device/stream.js';

function pair(holdMs = 5_000) {
  let now = 0;
  let up = true;
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  const got: Record<string, string> = { a: '', b: '' };
  const events: string[] = [];
  let accepted: Stream | null = null;
  const wire = (to: () => StreamMux, from: string) => (_peer: string, p: Uint8Array) => {
    if (!up) return Promise.reject(new Error('not connected to the broker'));
    queueMicrotask(() => to().receive(from, p));
    return Promise.resolve();
  };
  const a: StreamMux = new StreamMux({ send: wire(() => b, 'a'), accept: () => {}, now: () => now, random32: () => 7, holdMs, rtoMs: 100 });
  const b: StreamMux = new StreamMux({
    send: wire(() => a, 'b'),
    accept: (s) => {
      accepted = s;
      s.events = { data: (d) => (got.b += new TextDecoder().decode(d)), end: () => events.push('b end'), reset: () => events.push('b reset') };
    },
    now: () => now,
    random32: () => 9,
    holdMs,
    rtoMs: 100,
  });
  const settle = () => new Promise((r) => setImmediate(r));
  return {
    a,
    b,
    got,
    events,
    unhandled,
    accepted: () => accepted,
    set up(v: boolean) {
      up = v;
    },
    async advance(ms: number) {
      now += ms;
      a.tick();
      b.tick();
      await settle();
    },
    settle,
    done: () => process.off('unhandledRejection', onUnhandled),
  };
}

const enc = (s: string) => new TextEncoder().encode(s);

t.test('held while the link is down, delivered once it is back', async (t) => {
  const p = pair();
  t.teardown(p.done);
  const s = p.a.open('b');
  s.events = { data() {}, end: () => p.events.push('a end'), reset: () => p.events.push('a reset') };
  await p.settle();
  t.ok(p.accepted(), 'the peer accepted the stream');
  p.up = false;
  await s.write(enc('during the outage'));
  s.close();
  await p.advance(1_000);
  t.equal(p.got.b, '', 'nothing arrives while the link is down');
  p.up = true;
  await p.advance(1_000);
  t.equal(p.got.b, 'during the outage', 'the held data arrives once the link is back');
  t.same(p.events, ['b end'], 'and the held FIN after it');
  t.same(p.unhandled, [], 'no rejection reached the process');
});

t.test('aborted after the hold deadline, with reset() locally', async (t) => {
  const p = pair(5_000);
  t.teardown(p.done);
  const s = p.a.open('b');
  s.events = { data() {}, end: () => p.events.push('a end'), reset: () => p.events.push('a reset') };
  await p.settle();
  p.up = false;
  await s.write(enc('x'));
  await p.advance(4_000);
  t.notOk(s.isClosed, 'within the hold the stream waits');
  await p.advance(1_500);
  t.ok(s.isClosed, 'past the hold it is aborted');
  t.same(p.events, ['a reset'], 'the local side sees reset (the TCP connection is reset)');
  t.equal(p.a.size, 0, 'and the mux forgot it');
  s.close();
  s.reset();
  await s.write(enc('late'));
  await p.settle();
  t.same(p.unhandled, [], 'later close, reset and write are no-ops, and nothing rejects');
});

t.test('abortAll ends every stream at once, without sending', async (t) => {
  const p = pair();
  t.teardown(p.done);
  const s1 = p.a.open('b');
  const s2 = p.a.open('c');
  const seen: string[] = [];
  s1.events = { data() {}, end() {}, reset: () => seen.push('s1') };
  s2.events = { data() {}, end() {}, reset: () => seen.push('s2') };
  p.up = false;
  p.a.abortAll('left plant (evicted)');
  t.same(seen.sort(), ['s1', 's2'], 'each local side sees reset');
  t.equal(p.a.size, 0, 'none left');
  await p.settle();
  t.same(p.unhandled, [], 'nothing rejects');
});
