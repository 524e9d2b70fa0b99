/** device/detach.ts: a detached rejection is logged and counted under its kind, and never reaches the process. */
import t from 'tap';
import { detach, detachedFailures } from '../../device/detach.js';

t.test('logs, counts by kind, and keeps the rejection from the process', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => process.off('unhandledRejection', onUnhandled));
  const lines: string[] = [];
  const log = (level: string, msg: string) => lines.push(`${level}: ${msg}`);
  const before = detachedFailures()['test kind'] ?? 0;
  detach(Promise.reject(new Error('link down')), 'test kind', log, 'warn', 'b/7');
  detach(Promise.reject(new Error('again')), 'test kind', log, 'debug', 'c/9');
  detach(Promise.resolve(1), 'test kind', log);
  await new Promise((r) => setImmediate(r));
  t.same(lines, ['warn: test kind (b/7) failed: link down', 'debug: test kind (c/9) failed: again'], 'each failure logged at its level, with its detail');
  t.equal(detachedFailures()['test kind'], before + 2, 'counted under the kind, not the detail');
  t.same(unhandled, [], 'nothing reached the process');
});
