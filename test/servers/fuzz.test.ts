/**
 * Fuzz regression (issue 23): any bytes and well-formed-but-wrong envelopes
 * thrown at each service's handler (its Peer, as the broker hands it
 * messages) and at the embedded broker's publish check. Properties: no
 * exception escapes, no table changes, nothing is sent to a device (no
 * reply to an unauthenticated sender), and the broker admits a device's
 * publish only where the protocol has it. A few thousand cases here;
 * KAGI_FUZZ_RUNS=N runs N per property.
 */
import t from 'tap';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { controlPlane, crypto, device, tempDir, vpnWithUsers } from '../helpers/control-plane.js';
import { encodeEnvelope, encodeEnvelopeHeader } from '../../protocol/envelope.js';
import { sealRequest, sealSymmetric } from '../../protocol/sealed.js';
import { MESSAGE_TYPES, type MessageType } from '../../protocol/messages.js';
import { SERVICES, topics, type Service } from '../../protocol/topics.js';
import { CLASS_BYTES, checkDevicePublish } from '../../broker/publish-policy.js';
import { LIMITS } from '../../protocol/limits.js';

const RUNS = Number(process.env.KAGI_FUZZ_RUNS ?? 0) || undefined;
const runs = (n: number) => ({ numRuns: RUNS ?? n });

t.test('service handlers: garbage and wrong envelopes change nothing and get no answer', async (t) => {
  const data = tempDir(t);
  // Quotas off and polls far apart: nothing but the fuzz moves.
  const cp = await controlPlane(data, { liveness: { pollIntervalMs: 3_600_000 }, quota: { publishesPerSecond: 0, controlPerSecond: 0, bytesPerSecond: 0 } });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const dev = await device(cp, 'fz');
  await device(cp, 'victim');
  const outsider = crypto.generateKeyPair();

  // Tables as the services see them; counters and windows move with any
  // message a service sends, so they are left out.
  const db = new Database(join(data, 'kagi.db'), { readonly: true });
  t.teardown(() => db.close());
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('numbers', 'seq_windows')").all() as { name: string }[]).map((r) => r.name);
  const digest = () => {
    const h = createHash('sha256');
    for (const name of tables) h.update(name).update(JSON.stringify(db.prepare(`SELECT * FROM "${name}"`).raw().all(), (_k, v) => (typeof v === 'bigint' ? String(v) : v)));
    return h.digest('hex');
  };
  // What the services publish to devices while fuzzed: nothing.
  const toDevices: string[] = [];
  cp.broker!.aedes.on('publish', (packet, client) => {
    if (client && (SERVICES as readonly string[]).includes(client.id) && /^kagi\/v1\/dev\//.test(packet.topic)) toDevices.push(packet.topic);
  });
  const before = digest();

  const ids = fc.constantFrom('fz', 'victim', 'auth', 'config', 'keys', 'ghost', 'admin-x');
  const types = Object.keys(MESSAGE_TYPES) as MessageType[];
  const u32 = fc.integer({ min: 0, max: LIMITS.maxSeq });
  /** A header any service decodes: a real type, real-looking ids, enc where the type's kind has one. */
  const header = (to: Service) =>
    fc.record({ type: fc.constantFrom(...types), from: ids, to: fc.constantFrom(to, to, 'auth'), seq: u32, reqId: u32, enc: fc.uint8Array({ minLength: 32, maxLength: 32 }) })
      .map((h) => ({ ...h, enc: MESSAGE_TYPES[h.type].kind === 'sealed' ? h.enc : null }));
  const wrongEnvelope = (to: Service) => fc.tuple(header(to), fc.uint8Array({ minLength: 16, maxLength: 300 })).map(([h, ct]) => encodeEnvelope(encodeEnvelopeHeader(h), ct));
  /** Sealed for real, but by a key that is not the sender's (an outsider claiming an id), or on a channel nobody has. */
  const forged = (to: Service) =>
    fc.record({ type: fc.constantFrom(...types), from: ids, seq: u32, reqId: u32, body: fc.anything({ maxDepth: 3 }) }).map((m) =>
      MESSAGE_TYPES[m.type].kind === 'sealed'
        ? sealRequest(crypto, { type: m.type, from: m.from, to, seq: m.seq, reqId: m.reqId }, outsider.secretKey, cp.keys[to].publicKey, m.body, Math.floor(Date.now() / 1000), 0).bytes
        : sealSymmetric(crypto, { type: m.type, from: m.from, to, seq: m.seq, reqId: m.reqId }, crypto.randomBytes(32), m.body));

  for (const name of SERVICES) {
    const peer = cp.peers[name]!;
    const feed = async (bytes: Uint8Array) => {
      await peer.receive(bytes); // rejects if anything escapes
      return true;
    };
    await t.resolves(fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), feed), runs(600)), `${name}: any bytes`);
    await t.resolves(fc.assert(fc.asyncProperty(wrongEnvelope(name), feed), runs(400)), `${name}: well-formed envelopes with wrong contents`);
    await t.resolves(fc.assert(fc.asyncProperty(forged(name), feed), runs(100)), `${name}: sealed by the wrong key`);
  }
  // Config requests forwarded to auth come back refused: let the last settle.
  await new Promise((r) => setTimeout(r, 200));
  t.equal(digest(), before, 'no table changed');
  t.same(toDevices, [], 'nothing was sent to any device');
  void dev;
});

t.test('broker publish path: only the protocol\'s topics, retained only on the own state topic, within size', async (t) => {
  const cp = await controlPlane(tempDir(t), { quota: { publishesPerSecond: 0, controlPerSecond: 0, bytesPerSecond: 0 } });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  await device(cp, 'fz');
  cp.acl.setMembers('plant', [{ deviceId: 'fz', principal: 'fz' }, { deviceId: 'peer', principal: 'peer' }]);

  /** What the protocol lets fz publish: the oracle, written out from docs/protocol.md, not from the policy. */
  const allowed = (topic: string, retain: boolean, bytes: number): boolean => {
    const control = ['config/request', 'config/join', 'config/admin', 'config/reply', 'keys/reply'].map((o) => `kagi/v1/svc/${o}`);
    if (control.includes(topic)) return !retain && bytes <= LIMITS.envelopeBytes;
    if (topic === topics.state('fz')) return bytes <= 7;
    if (['all', 'fz', 'peer'].map((m) => `kagi/v1/vpn/plant/${m}`).includes(topic)) return !retain && bytes <= LIMITS.frameBytes;
    return false;
  };
  const level = fc.oneof(fc.constantFrom('kagi', 'v1', 'svc', 'dev', 'vpn', 'auth', 'config', 'keys', 'request', 'join', 'admin', 'reply', 'service', 'state', 'in', 'fz', 'peer', 'plant', 'all', 'other', ''), fc.string({ maxLength: 6 }));
  const topic = fc.oneof(fc.array(level, { minLength: 1, maxLength: 7 }).map((l) => l.join('/')), fc.constantFrom(...['kagi/v1/svc/config/request', topics.state('fz'), topics.state('victim'), 'kagi/v1/vpn/plant/all', 'kagi/v1/vpn/plant/nobody']));
  const size = fc.oneof(fc.integer({ min: 0, max: 16 }), fc.constantFrom(CLASS_BYTES.control, CLASS_BYTES.control + 1, CLASS_BYTES.frame + 1, 70_000));

  fc.assert(fc.property(topic, fc.boolean(), size, (tp, retain, bytes) => {
    const v = checkDevicePublish('fz', { topic: tp, retain, bytes }, cp.acl);
    return v.ok === allowed(tp, retain, bytes);
  }), runs(3000));
  t.pass('the policy admits exactly what the protocol has (3,000 cases)');

  // Through the broker's own authorizePublish, with fz's connection as aedes sees it.
  const aedes = cp.broker!.aedes;
  const client = { id: 'fz', will: null, closed: false } as unknown as Parameters<typeof aedes.authorizePublish>[0];
  const refusedBefore = [...cp.broker!.publishes.refused.values()].reduce((a, b) => a + b, 0);
  let refused = 0;
  await fc.assert(fc.asyncProperty(topic, fc.boolean(), size, fc.integer({ min: 0, max: 1 }), async (tp, retain, bytes, qos) => {
    const packet = { cmd: 'publish' as const, topic: tp, payload: Buffer.alloc(bytes), qos: qos as 0 | 1, retain, dup: false, messageId: 1 };
    const err = await new Promise<Error | null | undefined>((r) => aedes.authorizePublish!(client, packet, r));
    if (err) refused++;
    return (err == null) === allowed(tp, retain, bytes);
  }), runs(1000));
  t.equal([...cp.broker!.publishes.refused.values()].reduce((a, b) => a + b, 0) - refusedBefore, refused, 'every refusal counted by reason');
});
