/** The config server's kept answers (answers.ts): by enc, to their sender only, for a minute, at most `max`. */
import t from 'tap';
import { Answers } from '../../servers/config/answers.js';

t.test('an answer is found for a copy from its sender, not for anyone else; bounded in count and time', async (t) => {
  let now = 1_000_000;
  const a = new Answers(3, 60_000, () => now);
  const bytes = new Uint8Array([1, 2, 3]);
  a.keep('e1', { from: 'dev-1', to: 'dev-1', bytes });
  t.same(a.find('e1', 'dev-1')?.bytes, bytes, 'the copy from its sender gets the same bytes');
  t.equal(a.find('e1', 'dev-2'), undefined, 'a copy from another sender gets nothing');
  t.equal(a.find('e9', 'dev-1'), undefined, 'an enc never answered: nothing');

  now += 10_000;
  a.keep('e2', { from: 'dev-2', to: 'relay-1', bytes });
  a.keep('e3', { from: 'dev-3', to: 'dev-3', bytes });
  a.keep('e4', { from: 'dev-4', to: 'dev-4', bytes });
  t.equal(a.size, 3, 'at most max kept');
  t.equal(a.find('e1', 'dev-1'), undefined, 'the oldest went first');
  t.equal(a.find('e2', 'dev-2')?.to, 'relay-1', 'where the answer went is kept with it');

  now += 55_000; // e2..e4 are 55 s old
  t.equal(a.size, 3, 'within the minute: kept');
  now += 5_001;
  a.sweep();
  t.equal(a.size, 0, 'past the minute: swept, an idle server keeps none');
  t.equal(a.find('e3', 'dev-3'), undefined, 'and not found');
});
