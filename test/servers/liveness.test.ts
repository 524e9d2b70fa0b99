/** The liveness state machine (embodiment 4), transition by transition. */
import t from 'tap';
import { LivenessTable } from '../../servers/config/liveness.js';
import { livenessOptions } from '../../servers/config/config.js';

t.test('unanswered polls: ACTIVE → MISSING(n) → EVICTED after evictAfter', async (t) => {
  const l = new LivenessTable(3);
  t.equal(l.polled('m', 0), null, 'the first poll of a new member counts nothing');
  t.equal(l.state('m'), 'ACTIVE', 'a new member is ACTIVE');
  t.same(l.polled('m', 10), { member: 'm', from: 'ACTIVE', to: 'MISSING', missed: 1 }, 'second poll, nothing vouched since the first: missed 1');
  t.equal(l.polled('m', 20), null, 'still MISSING (no transition), missed 2');
  t.equal(l.missed('m'), 2, 'missed counts');
  t.same(l.polled('m', 30), { member: 'm', from: 'MISSING', to: 'EVICTED', missed: 3 }, 'third miss evicts');
  t.equal(l.polled('m', 40), null, 'EVICTED is terminal: further polls change nothing');
  t.equal(l.vouched('m', 41), null, 'and a late answer does not bring it back');
  t.equal(l.state('m'), 'EVICTED', 'it must join again');
});

t.test('an answer (or continue) between polls keeps a member ACTIVE; after a miss it comes back', async (t) => {
  const l = new LivenessTable(2);
  l.polled('m', 0);
  l.vouched('m', 5);
  t.equal(l.polled('m', 10), null, 'answered: no miss');
  t.same(l.polled('m', 20), { member: 'm', from: 'ACTIVE', to: 'MISSING', missed: 1 }, 'unanswered: MISSING');
  t.same(l.vouched('m', 25), { member: 'm', from: 'MISSING', to: 'ACTIVE', missed: 1 }, 'answered again: ACTIVE');
  t.equal(l.missed('m'), 0, 'and the count starts over');
  t.equal(l.polled('m', 30), null, 'no miss after the answer');
  t.same(l.polled('m', 40), { member: 'm', from: 'ACTIVE', to: 'MISSING', missed: 1 }, 'a single miss after that is 1, not 2');
});

t.test('restart (our own link was down): the next poll counts nothing, counting resumes after it', async (t) => {
  const l = new LivenessTable(3);
  l.polled('m', 0);
  l.polled('m', 10); // missed 1
  l.restart();
  t.equal(l.polled('m', 20), null, 'the first poll after our outage counts nothing');
  t.equal(l.missed('m'), 1, 'the count from before is kept, not raised');
  t.same(l.polled('m', 30), null, 'the poll after that counts again (missed 2, still MISSING)');
  t.equal(l.missed('m'), 2, 'missed 2');
  l.restart();
  l.vouched('m', 35);
  t.equal(l.state('m'), 'ACTIVE', 'an answer after the outage brings it back as usual');
});

t.test('forget and retain', async (t) => {
  const l = new LivenessTable(1);
  l.polled('a', 0);
  l.polled('b', 0);
  l.forget('a');
  t.equal(l.state('a'), undefined, 'forgotten');
  l.retain(new Set(['x']));
  t.equal(l.state('b'), undefined, 'members not in any VPN are dropped');
  t.throws(() => new LivenessTable(0), RangeError, 'evictAfter must be positive');
});

t.test('liveness options: defaults and the continue-before-eviction rule', async (t) => {
  t.same(livenessOptions({}), { pollIntervalMs: 30_000, evictAfter: 3, continueAfterMs: 75_000 }, 'defaults: 30 s, 3 polls, continue after 2.5 intervals');
  t.throws(() => livenessOptions({ pollIntervalMs: 1000, evictAfter: 2, continueAfterMs: 2000 }), /must be below evict-after/, 'continue must come before eviction');
  t.throws(() => livenessOptions({ pollIntervalMs: 10 }), /at least 50 ms/, 'a poll interval too short to be real');
  t.throws(() => livenessOptions({ evictAfter: 1.5 }), /positive whole number/, 'evict-after is whole polls');
});

t.test('rejoined: a MISSING member the store calls communicating starts over', async (t) => {
  const l = new LivenessTable(2);
  for (const m of ['late', 'quiet', 'fine']) l.polled(m, 0);
  l.vouched('fine', 5);
  l.polled('late', 10); // missed 1 of 2
  l.polled('quiet', 10);
  l.polled('fine', 10);
  t.equal(l.state('late'), 'MISSING', 'late missed a poll');
  // Another instance handled late's join (communicating again in the store);
  // quiet is still marked not communicating; fine was never MISSING.
  t.same(l.rejoined(new Set(['quiet'])), ['late'], 'only the MISSING member the store calls communicating');
  t.equal(l.state('late'), undefined, 'forgotten: a fresh start');
  t.equal(l.polled('late', 20), null, 'so the next poll counts nothing and cannot evict it');
  t.equal(l.state('late'), 'ACTIVE', 'it is ACTIVE again');
  t.equal(l.state('quiet'), 'MISSING', 'quiet keeps its count');
  t.same(l.polled('quiet', 20), { member: 'quiet', from: 'MISSING', to: 'EVICTED', missed: 2 }, 'and is evicted on its second miss');
  t.equal(l.missed('fine'), 0, 'fine is untouched');
});
