/**
 * Per-client quotas (broker/quota.ts) on an injected clock: each bucket
 * admits its burst and then its rate, a drop names its reason, a client
 * that stays over is told to go and one that goes quiet is not, in-flight
 * and retained bytes are bounded, and clients gone quiet are forgotten.
 */
import t from 'tap';
import { Quotas } from '../../broker/quota.js';

const pub = (o: Partial<{ topic: string; bytes: number; qos: number; retain: boolean; control: boolean }> = {}) => ({ topic: 'kagi/v1/vpn/v/all', bytes: 10, qos: 0, retain: false, control: false, ...o });

t.test('rate: the burst, then the rate; drops name the reason', async (t) => {
  let now = 0;
  const q = new Quotas({ publishesPerSecond: 10, overForMs: 5000 }, () => now);
  let admitted = 0;
  for (let i = 0; i < 30; i++) if (q.admit('d', pub()).admit) admitted++;
  t.equal(admitted, 20, 'a burst of 2 s of the rate');
  t.match(q.admit('d', pub()), { admit: false, reason: 'rate', disconnect: false }, 'then dropped, by reason');
  now += 1000;
  admitted = 0;
  for (let i = 0; i < 30; i++) if (q.admit('d', pub()).admit) admitted++;
  t.equal(admitted, 10, 'a second later: one second of the rate');
  t.ok(q.admit('other', pub()).admit, 'other clients have their own buckets');
});

t.test('control and bytes have buckets of their own', async (t) => {
  const now = 0;
  const q = new Quotas({ controlPerSecond: 5, bytesPerSecond: 100_000 }, () => now);
  let n = 0;
  while (q.admit('d', pub({ control: true })).admit) n++;
  t.equal(n, 50, 'control: 10 s of the rate');
  t.match(q.admit('d', pub({ control: true })), { reason: 'control' });
  t.ok(q.admit('d', pub()).admit, 'frames still go');
  const big = new Quotas({ bytesPerSecond: 100_000 }, () => now);
  let bytes = 0;
  while (big.admit('d', pub({ bytes: 10_000 })).admit) bytes += 10_000;
  t.equal(bytes, 200_000, 'bytes: 2 s of the rate');
  t.match(big.admit('d', pub({ bytes: 10_000 })), { reason: 'bytes' });
});

t.test('staying over gets a disconnect; a quiet second resets it', async (t) => {
  let now = 0;
  const q = new Quotas({ publishesPerSecond: 1, overForMs: 3000 }, () => now);
  q.admit('d', pub());
  q.admit('d', pub());
  let last = q.admit('d', pub());
  t.match(last, { admit: false, disconnect: false }, 'over, not yet for long');
  for (; now < 2900; now += 100) last = q.admit('d', pub());
  t.match(last, { admit: false, disconnect: false }, 'still under 3 s over');
  now = 3100;
  last = q.admit('d', pub());
  while (last.admit) last = q.admit('d', pub());
  t.match(last, { admit: false, disconnect: true }, 'over for 3 s: disconnect');
  const honest = new Quotas({ publishesPerSecond: 1, overForMs: 3000 }, () => now);
  for (let k = 0; k < 5; k++) {
    while (honest.admit('h', pub()).admit);
    const v = honest.admit('h', pub());
    t.match(v, { admit: false, disconnect: false }, `burst ${k + 1}: dropped, not disconnected`);
    now += 2500; // a quiet spell between bursts
  }
});

t.test('in-flight QoS 1 and retained bytes are bounded', async (t) => {
  const q = new Quotas({ inflight: 3, retainedBytes: 10 });
  for (let i = 0; i < 3; i++) t.ok(q.admit('d', pub({ qos: 1 })).admit);
  t.match(q.admit('d', pub({ qos: 1 })), { reason: 'inflight' }, 'a fourth in flight is dropped');
  t.ok(q.admit('d', pub({ qos: 0 })).admit, 'QoS 0 does not wait');
  q.delivered('d');
  t.ok(q.admit('d', pub({ qos: 1 })).admit, 'one delivered: one more');
  q.closed('d');
  t.ok(q.admit('d', pub({ qos: 1 })).admit, 'a closed connection has nothing in flight');
  t.ok(q.admit('d', pub({ topic: 's', retain: true, bytes: 7 })).admit, 'a retained state');
  t.ok(q.admit('d', pub({ topic: 's', retain: true, bytes: 7 })).admit, 'replacing it counts once');
  t.match(q.admit('d', pub({ topic: 't', retain: true, bytes: 7 })), { reason: 'retained' }, 'a second topic over the retained bytes');
});

t.test('clients gone quiet are forgotten', async (t) => {
  let now = 0;
  const q = new Quotas({ publishesPerSecond: 10 }, () => now);
  for (let i = 0; i < 100; i++) q.admit(`c${i}`, pub());
  t.equal(q.size, 100);
  q.sweep(() => false);
  t.equal(q.size, 100, 'buckets not yet full again: kept');
  now += 60_000;
  q.sweep((id) => id === 'c1');
  t.equal(q.size, 1, 'full again: forgotten, but a connected client stays');
  // Every agent retains its state topic: that must not keep it forever.
  for (let i = 0; i < 100; i++) q.admit(`s${i}`, pub({ topic: `kagi/v1/dev/s${i}/state`, retain: true, bytes: 6 }));
  now += 60_000;
  q.sweep(() => false);
  t.equal(q.size, 0, 'devices that retained their state and went away are forgotten too');
});

t.test('--quota-over 0 is no limit: drops go on, nobody is disconnected', async (t) => {
  let now = 0;
  const q = new Quotas({ publishesPerSecond: 1, overForMs: 0 }, () => now);
  let disconnects = 0;
  let drops = 0;
  for (; now < 60_000; now += 50) {
    const v = q.admit('d', pub());
    if (!v.admit) drops++;
    if (!v.admit && v.disconnect) disconnects++;
  }
  t.ok(drops > 1000, `over its rate for a minute: ${drops} dropped`);
  t.equal(disconnects, 0, 'and never told to go');
});
