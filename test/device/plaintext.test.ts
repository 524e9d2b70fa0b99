/**
 * A plaintext terminal told by its relay that the join waits (throttled,
 * busy: the relay asks again by itself) keeps waiting for the answer
 * instead of timing out at its own timeout.
 */
import t from 'tap';
import { PlaintextAgent } from '../../device/plaintext.js';
import { encodePortFrame } from '../../protocol/port-frame.js';

const cfg = { id: 'plc-1', mac: '02:00:00:00:01:01', relay: 'relay-1', port: 'p1' };

t.test('a waiting frame stretches the wait to twice the retry time plus the timeout', async (t) => {
  const waited: string[] = [];
  const p = new PlaintextAgent(cfg, { write: () => {} }, { timeoutMs: 30, onWaiting: (s, reason) => waited.push(`${s} ${reason}`) });
  const started = Date.now();
  const join = p.join('alice', 'pw');
  p.input(encodePortFrame({ type: 'waiting', body: { code: 'throttled', reason: 'too many failed password attempts: try again later', retryAfter: 1 } }));
  t.same(waited, ['1 too many failed password attempts: try again later'], 'the terminal is told why and for how long');
  await t.rejects(join, /no joined from the relay within 2030 ms/, 'with no answer, it gives up only after 2 × 1 s + 30 ms');
  t.ok(Date.now() - started >= 1990, 'not at its own 30 ms');
});

t.test('the answer after a wait is taken', async (t) => {
  const p = new PlaintextAgent(cfg, { write: () => {} }, { timeoutMs: 5_000 });
  const join = p.join('alice', 'pw');
  p.input(encodePortFrame({ type: 'waiting', body: { code: 'busy', reason: 'the auth server is busy: try again later', retryAfter: 1 } }));
  p.input(encodePortFrame({ type: 'joined', body: { vpns: [{ id: 'plant', protocol: 'tcp', port: 5020 }] } }));
  t.same(await join, [{ id: 'plant', protocol: 'tcp', port: 5020 }], 'joined');
});
