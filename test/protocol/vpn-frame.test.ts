/** VPN data frames: per-sender keys, replay, boots, epochs and grace. */
import t from 'tap';
import { FrameReceiver, FrameSender, decodeFrame } from '../../protocol/vpn-frame.js';
import { KagiError } from '../../protocol/errors.js';
import { utf8 } from '../../protocol/bytes.js';
import { backends } from '../helpers/backends.js';

const GRACE = 30_000;

function code(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (e instanceof KagiError) return e.code;
    throw e;
  }
}

for (const c of backends) {
  t.test(`frames on ${c.name}`, async (t) => {
    const k1 = c.randomBytes(32);
    const a = new FrameSender(c, 'vpn1', 'term-a');
    const rx = new FrameReceiver(c, 'vpn1', GRACE);
    a.setKey(1, k1);
    rx.setKey(1, k1, 0);

    const f0 = a.seal(utf8('hello'), 'all');
    const got = rx.open(f0, 1, 'all');
    t.same([got.sender, got.epoch, got.counter, new TextDecoder().decode(got.payload)], ['term-a', 1, 0, 'hello'], 'opens with sender, epoch, counter');
    t.equal(code(() => rx.open(f0, 1, 'all')), 'replay', 'the same frame twice is a replay');

    // Out-of-order delivery inside the window is fine.
    const f1 = a.seal(utf8('1'), 'all');
    const f2 = a.seal(utf8('2'), 'all');
    t.equal(rx.open(f2, 1, 'all').counter, 2, 'counter 2 before 1');
    t.equal(rx.open(f1, 1, 'all').counter, 1, 'then 1');

    // Two senders with the same group key never share a (key, nonce).
    const b = new FrameSender(c, 'vpn1', 'term-b');
    b.setKey(1, k1);
    const fb = b.seal(utf8('hello'), 'all');
    t.not(Buffer.compare(decodeFrame(fb).ciphertext, decodeFrame(f0).ciphertext), 0, 'same plaintext, counter 0, other sender: other ciphertext');
    t.equal(rx.open(fb, 1, 'all').sender, 'term-b', 'second sender accepted');

    // A forged sender id (same key, other id) does not authenticate.
    const fbFrame = decodeFrame(fb);
    const bytes = fb.slice();
    const at = Buffer.from(bytes).indexOf(Buffer.from('term-b'));
    bytes[at + 5] = 'c'.charCodeAt(0);
    t.equal(code(() => rx.open(bytes, 1, 'all')), 'auth', `header bound as AAD: renamed sender fails (${fbFrame.sender}→term-c)`);

    // Restart of sender A: new boot salt, counter from 0 again, accepted.
    const a2 = new FrameSender(c, 'vpn1', 'term-a');
    a2.setKey(1, k1);
    t.not(Buffer.compare(a2.bootSalt, a.bootSalt), 0, 'a new boot has a new salt');
    t.equal(rx.open(a2.seal(utf8('after reboot'), 'all'), 1, 'all').counter, 0, 'new boot accepted from counter 0');
    t.equal(code(() => rx.open(a.seal(utf8('old boot'), 'all'), 1, 'all')), 'replay', 'frames of the earlier boot are refused');

    // Rekey with grace for the previous epoch.
    const k2 = c.randomBytes(32);
    const late = a2.seal(utf8('sent before rekey'), 'all');
    rx.setKey(2, k2, 1000);
    a2.setKey(2, k2);
    t.equal(rx.open(a2.seal(utf8('new epoch'), 'all'), 1001, 'all').epoch, 2, 'new epoch accepted');
    t.equal(rx.open(late, 1000 + GRACE - 1, 'all').epoch, 1, 'previous epoch accepted inside grace');
    t.equal(code(() => rx.open(a2.seal(utf8('x'), 'all'), 1002, 'all')), 'ok', 'current epoch still fine');
    const late2 = new FrameSender(c, 'vpn1', 'term-z');
    late2.setKey(1, k1);
    t.equal(code(() => rx.open(late2.seal(utf8('too late'), 'all'), 1000 + GRACE, 'all')), 'epoch', 'previous epoch refused after grace');
    const ahead = new FrameSender(c, 'vpn1', 'term-y');
    ahead.setKey(3, c.randomBytes(32));
    t.match(code(() => rx.open(ahead.seal(utf8('?'), 'all'), 2000, 'all')), 'epoch', 'a frame from a future epoch asks for keys');
    const other = new FrameSender(c, 'vpn2', 'term-a');
    other.setKey(2, k2);
    t.equal(code(() => rx.open(other.seal(utf8('x'), 'all'), 2000, 'all')), 'field', 'a frame of another VPN is refused');
    const wrongKey = new FrameSender(c, 'vpn1', 'term-q');
    wrongKey.setKey(2, c.randomBytes(32));
    t.equal(code(() => rx.open(wrongKey.seal(utf8('x'), 'all'), 2000, 'all')), 'auth', 'a non-member key fails');

    t.equal(code(() => new FrameSender(c, 'vpn1', 'x').seal(utf8('x'), 'all')), 'argument', 'no key yet');

    // The target is in the authenticated header: a frame for term-b does
    // not open on term-c's topic, and a rewritten target fails the tag.
    const forB = a2.seal(utf8('for b only'), 'term-b');
    t.equal(decodeFrame(forB).target, 'term-b', 'the header names the target');
    t.equal(code(() => rx.open(forB, 1003, 'term-c')), 'unexpected', 'redirected to another member\'s topic: refused before any key is used');
    t.equal(code(() => rx.open(forB, 1003, 'all')), 'unexpected', 'and on the all topic');
    const rewritten = forB.slice();
    rewritten.set(new TextEncoder().encode('term-c'), Buffer.from(rewritten).indexOf('term-b'));
    t.equal(code(() => rx.open(rewritten, 1003, 'term-c')), 'auth', 'a target rewritten in the header fails authentication');
    t.equal(rx.open(forB, 1003, 'term-b').sender, 'term-a', 'on its own target it opens');
    t.equal(code(() => a2.setKey(2, k2)), 'argument', 'epochs only move forward');
    t.equal(code(() => a2.setKey(5, new Uint8Array(16))), 'key', 'group keys are 32 bytes');
  });
}

t.test('every truncation and bit flip of a frame is refused with a typed error', async (t) => {
  const c = backends[1]!;
  const k = c.randomBytes(32);
  const s = new FrameSender(c, 'vpn1', 'term-a');
  s.setKey(7, k);
  const frame = s.seal(utf8('payload bytes'), 'all');
  let refused = 0;
  for (let pos = 0; pos < frame.length; pos++) {
    for (let bit = 0; bit < 8; bit++) {
      const rx = new FrameReceiver(c, 'vpn1', GRACE);
      rx.setKey(7, k, 0);
      const f = frame.slice();
      f[pos]! ^= 1 << bit;
      if (code(() => rx.open(f, 0, 'all')) !== 'ok') refused++;
    }
  }
  t.equal(refused, frame.length * 8, 'every single-bit flip refused');
  const rx = new FrameReceiver(c, 'vpn1', GRACE);
  rx.setKey(7, k, 0);
  let cuts = 0;
  for (let n = 0; n < frame.length; n++) if (code(() => rx.open(frame.subarray(0, n), 0, 'all')) !== 'ok') cuts++;
  t.equal(cuts, frame.length, 'every truncation refused');
  t.equal(code(() => rx.open(new Uint8Array([...frame, 1]), 0, 'all')), 'decode', 'appended byte refused');
  t.equal(code(() => rx.open(frame, 0, 'all')), 'ok', 'the untouched frame opens');
});
