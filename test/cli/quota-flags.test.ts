/**
 * kagi up's --quota-* flags: each sets its limit (sizes and durations in
 * the CLI's units, 0 = no limit), bad values are usage errors naming the
 * flag before anything starts, they are refused with --broker (whose
 * broker has its own limits), and --help lists them.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kagiIn } from '../helpers/cli.js';
import { tempDir } from '../helpers/control-plane.js';
import { quotaOptions } from '../../cli/commands/up.js';
import { DEFAULT_QUOTA } from '../../broker/quota.js';

t.test('each --quota-* flag sets its limit; none given: the defaults', async (t) => {
  t.same(quotaOptions({}), DEFAULT_QUOTA, 'no flags: the defaults');
  t.same(
    quotaOptions({ 'quota-rate': '500', 'quota-control-rate': '0', 'quota-bytes': '2MiB', 'quota-inflight': '10', 'quota-retained': '512', 'quota-over': '0' }),
    { publishesPerSecond: 500, controlPerSecond: 0, bytesPerSecond: 2 * 1024 * 1024, inflight: 10, retainedBytes: 512, overForMs: 0 },
    'every flag, with 0 for no limit',
  );
  t.equal(quotaOptions({ 'quota-over': '1500ms' }).overForMs, 1500, '--quota-over takes a duration');
});

t.test('kagi up refuses bad --quota-* values before it starts, naming the flag', async (t) => {
  const data = join(tempDir(t), 'data');
  const cases: [string[], RegExp][] = [
    [['--quota-rate=-5'], /--quota-rate must not be negative/],
    [['--quota-control-rate', 'lots'], /--quota-control-rate must be an integer, not 'lots'/],
    [['--quota-bytes', '3 parsecs'], /--quota-bytes must be a size like/],
    [['--quota-inflight', '1.5'], /--quota-inflight must be an integer/],
    [['--quota-retained=-1KiB'], /--quota-retained must be a size like/],
    [['--quota-over', 'soon'], /--quota-over must be a duration like/],
    [['--broker', 'mqtt://127.0.0.1:1', '--quota-rate', '10'], /--quota-\* apply to the embedded broker/],
  ];
  for (const [args, re] of cases) {
    const r = await kagiIn(['up', '--data', data, '--port', '0', ...args]);
    t.equal(r.code, 2, `${args.join(' ')}: a usage error`);
    t.match(r.stderr, re, 'that says what is wrong');
  }
  t.notOk(existsSync(data), 'and nothing was started or made');
  const help = await kagiIn(['up', '--help']);
  for (const f of ['rate', 'control-rate', 'bytes', 'inflight', 'retained', 'over']) t.match(help.stdout, new RegExp(`--quota-${f} `), `kagi up --help names --quota-${f}`);
});
