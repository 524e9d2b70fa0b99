/** kagi up's monitoring flags: a default continue-after that fits any --evict-after. */
import t from 'tap';
import { kagi, kagiUp, stopChild } from '../helpers/cli.js';
import { tempDir } from '../helpers/control-plane.js';

t.test('kagi up --evict-after 2 starts: the default continue-after fits', async (t) => {
  const up = await kagiUp(['--evict-after', '2', '--port', '0', '--data', tempDir(t)]);
  t.teardown(() => stopChild(up));
  t.match(up.brokerUrl, /^mqtt:\/\/127\.0\.0\.1:\d+$/, 'up, with its broker');
  await stopChild(up);
  t.equal(up.exitCode, 0, 'and stops cleanly');
  t.match(kagi(['up', '--help']).stdout, /evict-after − 0\.5/, '--help says how the default is derived');
});
