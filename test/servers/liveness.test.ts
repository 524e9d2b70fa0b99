/** The liveness state machine (embodiment 4), transition by transition. */
import t from 'tap';
import { LivenessTable } from '../../servers/config/liveness.js';
import { livenessOptions } from '../../servers/config/config.js';
import { Reach, RECONNECT_WINDOW_MS } from '../../servers/config/reach.js';

t.test('unanswered polls: ACTIVE → MISSING(n) → EVICTED after evictAfter', async (t) => {
  const l = new LivenessTable(3);
  t.equal(l.polled('m', 0), null, 'the first poll of a new member counts nothing');
  t.equal(l.state('m'), 'ACTIVE', 'a new member is ACTIVE');
  t.same(l.polled('m', 10), { member: 'm', from: 'ACTIVE', to: 'MISSING', missed: 1 }, 'second poll, nothing vouched since the first: missed 1');
  t.same(l.polled('m', 20), { member: 'm', from: 'MISSING', to: 'MISSING', missed: 2 }, 'still MISSING, missed 2: a change of count, for the store');
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
  t.same(l.polled('m', 30), { member: 'm', from: 'MISSING', to: 'MISSING', missed: 2 }, 'the poll after that counts again (missed 2, still MISSING)');
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

t.test('the default continue-after always comes before an eviction', async (t) => {
  t.same(livenessOptions({ evictAfter: 2 }), { pollIntervalMs: 30_000, evictAfter: 2, continueAfterMs: 45_000 }, 'evict-after 2: continue after 1.5 intervals');
  t.equal(livenessOptions({ evictAfter: 1, pollIntervalMs: 1000 }).continueAfterMs, 500, 'evict-after 1: after half an interval');
  t.equal(livenessOptions({ evictAfter: 5 }).continueAfterMs, 75_000, 'from 3 up: the usual 2.5 intervals');
  const late = [1, 2, 3, 4, 10].filter((n) => !(livenessOptions({ evictAfter: n, pollIntervalMs: 1000 }).continueAfterMs < n * 1000));
  t.same(late, [], 'below evict-after × poll interval for every evict-after');
  t.throws(() => livenessOptions({ pollIntervalMs: 1000, evictAfter: 2, continueAfterMs: 2000 }), /pass a continue-after below 2000 ms .*or raise evict-after/, 'one given that does not fit says which setting to change');
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

t.test('only delivered polls are judged: an undelivered one proves nothing', async (t) => {
  const l = new LivenessTable(2);
  t.equal(l.due('m'), null, 'nothing sent yet: nothing to judge');
  l.delivered('m', 0);
  t.same(l.due('m'), { member: 'm', from: 'ACTIVE', to: 'MISSING', missed: 1 }, 'a delivered poll nobody answered is a miss');
  l.undelivered('m');
  t.equal(l.due('m'), null, 'a poll that did not reach the holder’s broker is not');
  t.equal(l.due('m'), null, 'and a miss is counted once, not at every due');
  l.delivered('m', 10);
  l.vouched('m', 12);
  t.equal(l.state('m'), 'ACTIVE', 'an answer brings it back');
  t.equal(l.due('m'), null, 'the answered poll is no miss');
});

t.test('resume: the count the last lease holder left in the store', async (t) => {
  const l = new LivenessTable(3);
  l.resume('m', 2);
  t.equal(l.state('m'), 'MISSING', 'a member with misses on record resumes MISSING');
  t.equal(l.missed('m'), 2, 'with its count');
  t.equal(l.due('m'), null, 'its first poll from here is judged only at the next one');
  l.delivered('m', 0);
  t.same(l.due('m'), { member: 'm', from: 'MISSING', to: 'EVICTED', missed: 3 }, 'one more miss evicts: the count survived');
  l.resume('n', 0);
  t.equal(l.state('n'), undefined, 'no misses on record: nothing to resume');
  l.resume('o', 7);
  t.equal(l.missed('o'), 2, 'a count at or above evict-after (settings changed) leaves one miss to go');
});

t.test('reach: whose polls may count', async (t) => {
  const r = new Reach(1000, 500);
  t.notOk(r.counts('ghost', false, 1000), 'never seen, not recorded on this broker: never counts');
  t.notOk(r.counts('ghost', true, 10_000), 'not even with misses from elsewhere, or much later');
  r.saw('a');
  t.ok(r.counts('a', false, 1000), 'seen on our broker since we started: counts');
  r.restart(['b', 'c'], 2000);
  t.ok(r.counts('a', false, 2000), 'seen stays seen when we take the duty again');
  t.notOk(r.counts('b', false, 2400), 'recorded on this broker, no misses: not within the reconnect window');
  t.ok(r.counts('b', false, 2500), 'after the window it counts: a live agent would have reconnected');
  t.ok(r.counts('c', true, 2000), 'recorded here and missing polls already: counts at once');
  t.ok(RECONNECT_WINDOW_MS > 15_000, 'the default window outlasts an agent’s longest reconnect delay');
});
