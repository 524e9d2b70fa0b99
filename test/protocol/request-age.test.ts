/**
 * Sealed requests carry the time they were issued, authenticated, and the
 * receiver refuses one outside its bounds (issue 19, finding B): a request a
 * broker held back past its validity is refused, one within is taken, a
 * clock skew inside the bound is taken, and a sender whose clock is off
 * (a board that never heard the time) is told the time and gets in.
 */
import t from 'tap';
import { Peer, type PeerOptions } from '../../protocol/peer.js';
import { MemoryNumberStore } from '../../protocol/store.js';
import { checkRequestAge, CLOCK_SKEW_S, DEVICE_AGE_BOUNDS, REQUEST_VALIDITY_S, SERVICE_AGE_BOUNDS } from '../../protocol/sealed.js';
import { KagiError } from '../../protocol/errors.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';

const c = nodeCrypto();
const T0 = 1_800_000_000_000; // ms

interface Net {
  admin: Peer;
  config: Peer;
  /** What the admin published, in order. */
  wire: Uint8Array[];
  /** Requests the config server's handler saw. */
  handled: unknown[];
  /** Set to hold back everything the admin publishes (a broker that keeps it). */
  hold: { on: boolean };
  clocks: { admin: number; config: number };
  /** A request from the admin to config, answered or refused. */
  send(op: string, timeoutMs?: number): Promise<{ type: string; body: unknown }>;
}

function net(o: { admin?: Partial<PeerOptions> } = {}): Net {
  const ak = c.generateKeyPair();
  const ck = c.generateKeyPair();
  const handled: unknown[] = [];
  const wire: Uint8Array[] = [];
  const hold = { on: false };
  const clocks = { admin: T0, config: T0 };
  const peers = new Map<string, Peer>();
  const transport = (from: string) => ({
    publish: async (topic: string, bytes: Uint8Array) => {
      if (from === 'admin-1') wire.push(bytes);
      if (from === 'admin-1' && hold.on) return;
      await peers.get(topic)!.receive(bytes);
    },
  });
  const admin = new Peer({
    crypto: c, id: 'admin-1', secretKey: ak.secretKey, numbers: new MemoryNumberStore(), transport: transport('admin-1'),
    keyOf: async (id) => (id === 'config' ? ck.publicKey : undefined),
    replyTopic: () => 'admin-1',
    now: () => clocks.admin,
    timeFrom: (id) => id === 'config',
    ...o.admin,
  });
  const config = new Peer({
    crypto: c, id: 'config', secretKey: ck.secretKey, numbers: new MemoryNumberStore(), transport: transport('config'),
    keyOf: async (id) => (id === 'admin-1' ? ak.publicKey : undefined),
    replyTopic: () => 'admin-1',
    now: () => clocks.config,
    onRequest: async (m) => (handled.push(m.body), { type: 'admin.response', body: { result: 'done' } }),
  });
  peers.set('config', config).set('admin-1', admin);
  const send = (op: string, timeoutMs = 1000) =>
    admin.request({ to: 'config', pkR: ck.publicKey, topic: 'config', type: 'admin.request', body: { op }, timeoutMs }).then((r) => (r.secrets.destroy(), r));
  return { admin, config, wire, handled, hold, clocks, send };
}

t.test('the bounds, as stated in docs/protocol.md', async (t) => {
  const now = 1_800_000_000;
  t.doesNotThrow(() => checkRequestAge(now - REQUEST_VALIDITY_S - CLOCK_SKEW_S, now), 'late by validity + skew: taken');
  t.throws(() => checkRequestAge(now - REQUEST_VALIDITY_S - CLOCK_SKEW_S - 1, now), { name: 'KagiError', code: 'stale' }, 'a second more: stale');
  t.doesNotThrow(() => checkRequestAge(now + CLOCK_SKEW_S, now, SERVICE_AGE_BOUNDS), 'a service takes a sender ahead by the skew');
  t.throws(() => checkRequestAge(now + CLOCK_SKEW_S + 1, now, SERVICE_AGE_BOUNDS), KagiError, 'not more');
  t.doesNotThrow(() => checkRequestAge(now + REQUEST_VALIDITY_S + CLOCK_SKEW_S, now, DEVICE_AGE_BOUNDS), 'a device takes a service ahead by validity + skew (it may lag that much and still be taken)');
});

t.test('a request delivered after its validity is refused; within it, taken', async (t) => {
  const n = net();
  // A broker holds back a request; the admin gives up on it.
  n.hold.on = true;
  await t.rejects(n.send('vpn.grant', 50), { name: 'KagiError', code: 'unexpected' }, 'the admin times out');
  n.hold.on = false;
  const captured = n.wire[0]!;

  // Delivered 20 s later: inside the validity, taken (its answer finds nobody waiting).
  n.clocks.config = T0 + 20_000;
  await n.config.receive(captured);
  t.same(n.handled, [{ op: 'vpn.grant' }], 'delivered within the validity: handled');

  // Another held-back request, delivered after validity + skew.
  const m = net();
  m.hold.on = true;
  await t.rejects(m.send('vpn.grant', 50), { name: 'KagiError', code: 'unexpected' });
  m.hold.on = false;
  m.clocks.config = T0 + (REQUEST_VALIDITY_S + CLOCK_SKEW_S + 1) * 1000;
  await m.config.receive(m.wire[0]!);
  t.same(m.handled, [], 'delivered after validity + skew: not handled');
  t.equal(m.config.dropped.get('stale'), 1, 'counted as stale');
  t.equal(m.admin.dropped.get('unexpected'), 1, 'its refusal reached the admin, which had given up: dropped');
  t.same(m.handled, [], 'and nothing ran');
});

t.test('a clock skew inside the bound is taken, both ways', async (t) => {
  for (const skew of [CLOCK_SKEW_S, -(REQUEST_VALIDITY_S + CLOCK_SKEW_S) + 1]) {
    const n = net();
    n.clocks.admin = T0 + skew * 1000;
    const r = await n.send('status');
    t.equal(r.type, 'admin.response', `the admin's clock ${skew} s off: answered`);
    t.equal(n.wire.length, 1, 'at the first attempt');
    t.equal(n.config.dropped.get('stale'), undefined, 'nothing refused');
  }
});

t.test('a sender whose clock is far off is told the time and gets in (a board that never heard it)', async (t) => {
  const n = net({ admin: { wallClock: false } });
  n.clocks.admin = 5_000; // seconds since boot, not the time of day
  const r = await n.send('status');
  t.equal(r.type, 'admin.response', 'answered');
  t.equal(n.config.dropped.get('stale'), 1, 'the first attempt was refused as stale');
  t.equal(n.wire.length, 2, 'the second, with the corrected time, was taken');
  t.same(n.handled, [{ op: 'status' }], 'handled once');
  t.ok(Math.abs(n.admin.nowSeconds() - n.config.nowSeconds()) <= 1, 'the sender now reads the receiver\'s clock');
});

t.test('a refusal that does not come from a time source moves no clock', async (t) => {
  const n = net({ admin: { timeFrom: () => false } });
  n.clocks.admin = T0 - 3_600_000;
  const r = await n.send('status');
  t.equal(r.type, 'error', 'refused');
  t.match(String((r.body as { reason: string }).reason), /stale/, 'as stale');
  t.equal(n.wire.length, 1, 'not asked again');
  t.same(n.handled, [], 'nothing ran');
});
