/**
 * The embedded broker listens with a backlog sized for restart storms
 * (decision 121): Node's default of 511 overflowed when thousands of
 * devices connected at once, and each connection dropped there waited out
 * the kernel's retransmits. Read back from the kernel with ss, which shows
 * a listening socket's backlog as its Send-Q.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { LISTEN_BACKLOG } from '../../broker/broker.js';
import { controlPlane, tempDir } from '../helpers/control-plane.js';

const ss = spawnSync('ss', ['-V']).status === 0;
const SS_SKIP = 'ss (iproute2) is not installed: the listen backlog test needs it to read the backlog back';
if (!ss) console.error(`\n*** ${SS_SKIP} ***\n`);

t.test('the embedded broker listens with a backlog of LISTEN_BACKLOG (as far as somaxconn allows)', { skip: ss ? false : SS_SKIP }, async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  const port = new URL(cp.brokerUrl).port;
  const out = spawnSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).stdout.trim();
  const backlog = Number(out.split(/\s+/)[2]); // State Recv-Q Send-Q …: Send-Q is the backlog
  const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
  t.equal(backlog, Math.min(LISTEN_BACKLOG, somaxconn), `the kernel holds up to ${backlog} connections for it (ss: ${out})`);
  if (somaxconn > 511) t.ok(backlog > 511, "more than Node's default of 511");
});
