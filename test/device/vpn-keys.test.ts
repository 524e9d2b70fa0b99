/** A member's VPN keys: frames ahead of its epoch wait for the key instead of being lost. */
import t from 'tap';
import { MemberKeys, HOLD_FRAMES, HOLD_MS } from '../../device/vpn-keys.js';
import type { KagiError } from '../../protocol/errors.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';

const c = nodeCrypto();
const enc = new TextEncoder();
const dec = new TextDecoder();
const k1 = c.randomBytes(32);
const k2 = c.randomBytes(32);

function members(graceMs = 10_000) {
  const drops: string[] = [];
  const onDrop = (e: KagiError) => drops.push(e.code);
  const a = new MemberKeys(c, 'plant', 'a', graceMs);
  const b = new MemberKeys(c, 'plant', 'b', graceMs);
  a.install(1, k1, 0, onDrop);
  b.install(1, k1, 0, onDrop);
  return { a, b, drops, onDrop };
}

t.test('frames of the next epoch are held until its key arrives, then opened in order', async (t) => {
  const { a, b, drops, onDrop } = members();
  const before = b.receive(a.seal(enc.encode('e1'), 'all'), 'all', 1, onDrop);
  t.equal(before !== 'ahead' && before && dec.decode(before.payload), 'e1', 'same epoch opens');
  a.install(2, k2, 2, onDrop);
  t.equal(b.receive(a.seal(enc.encode('x'), 'all'), 'all', 3, onDrop), 'ahead', 'epoch 2 before b has it: held');
  t.equal(b.receive(a.seal(enc.encode('y'), 'all'), 'all', 4, onDrop), 'ahead', 'held');
  t.equal(b.heldFrames, 2, 'two frames wait');
  const out = b.install(2, k2, 5, onDrop);
  t.same(out.map((f) => dec.decode(f.payload)), ['x', 'y'], 'installing the key opens them, in order');
  t.equal(b.heldFrames, 0, 'none left');
  t.same(drops, [], 'nothing dropped');
  t.same(b.install(2, k2, 6, onDrop), [], 'installing the same epoch again is a no-op');
});

t.test('held frames expire, are bounded, and bad frames are dropped not held', async (t) => {
  const { a, b, drops, onDrop } = members();
  a.install(2, k2, 0, onDrop);
  b.receive(a.seal(enc.encode('old'), 'all'), 'all', 0, onDrop);
  b.receive(a.seal(enc.encode('new'), 'all'), 'all', HOLD_MS + 1, onDrop);
  t.same(drops, ['epoch'], 'a held frame older than HOLD_MS is dropped as epoch');
  t.equal(b.heldFrames, 1, 'the fresh one stays');
  for (let i = 0; i < HOLD_FRAMES; i++) b.receive(a.seal(enc.encode(`f${i}`), 'all'), 'all', HOLD_MS + 2, onDrop);
  t.equal(b.heldFrames, HOLD_FRAMES, `at most ${HOLD_FRAMES} held`);
  t.equal(drops.length, 2, 'the one over the bound is dropped');
  const bad = a.seal(enc.encode('tampered'), 'all');
  bad[bad.length - 1]! ^= 1;
  const c2 = new MemberKeys(c, 'plant', 'c', 1000);
  c2.install(2, k2, 0, onDrop);
  t.equal(c2.receive(bad, 'all', 1, onDrop), null, 'a tampered frame of a held epoch is not held');
  t.equal(drops[drops.length - 1], 'auth', 'dropped as auth');
});

t.test('the previous epoch is accepted for the grace period after a switch', async (t) => {
  const { a, b, drops, onDrop } = members(100);
  const late = a.seal(enc.encode('sealed under epoch 1'), 'all');
  b.install(2, k2, 1000, onDrop);
  const r = b.receive(late, 'all', 1050, onDrop);
  t.equal(r !== 'ahead' && r && dec.decode(r.payload), 'sealed under epoch 1', 'within grace: opens');
  t.equal(b.receive(a.seal(enc.encode('too late'), 'all'), 'all', 1200, onDrop), null, 'after grace: dropped');
  t.same(drops, ['epoch'], 'as epoch');
});

t.test('destroy wipes the keys: nothing seals or opens after', async (t) => {
  const { a, b, onDrop } = members();
  const frame = a.seal(enc.encode('before'), 'all');
  b.destroy();
  t.equal(b.epoch, -1, 'no epoch held');
  t.equal(b.receive(frame, 'all', 1, onDrop), 'ahead', 'a frame that would have opened before finds no key: it is not opened');
  a.destroy();
  t.throws(() => a.seal(enc.encode('after'), 'all'), /no group key yet/, 'and the sender seals nothing');
});
