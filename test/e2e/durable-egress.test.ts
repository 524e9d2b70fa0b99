/**
 * Decision 140 on the real control plane (SQLite, the embedded broker,
 * real sockets): a write resolves at its commit, and nothing leaves the
 * control plane before what it rests on is on disk. The store's
 * durable() is held here (a gate in front of the real one, which still
 * syncs): while it is, a device's CONNECT is not admitted though the
 * claim of its counter has committed, and a join whose first rows have
 * committed sends nothing (its keys first) and goes no further; let go,
 * both go on.
 */
import t from 'tap';
import { agent, controlPlane, device, settledAfter, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';

const settled = (p: Promise<unknown>) => settledAfter(p, 20);

t.test('nothing leaves the control plane before the writes it rests on are on disk', async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  const b = await device(cp, 'term-d');
  const store = cp.store;
  const real = store.durable.bind(store);
  let gate: Promise<void> | undefined;
  let open = () => {};
  let held = 0;
  const hold = () => {
    gate = new Promise<void>((r) => (open = () => ((gate = undefined), r())));
    held = 0;
  };
  store.durable = () => {
    if (!gate) return real();
    held++;
    return gate.then(real);
  };

  hold();
  const a = agent(b, cp.brokerUrl, { timeoutMs: deadline(20_000) });
  t.teardown(() => a.stop({ leave: false }));
  const starting = a.start();
  t.ok(await until(() => held > 0, 10_000), 'the broker claimed the CONNECT\'s counter and waits for it to be on disk');
  t.notOk(await settled(starting), 'the device is not admitted meanwhile');
  open();
  await starting;
  t.pass('admitted once it is on disk');

  hold();
  const joining = a.join('alice', 'alice-password');
  // Its membership and its first ticket commit before anything goes out
  // (the keys are the first message of the join to leave).
  const rows = async () => (await store.membershipsOf('term-d')).length > 0 && (await store.ticketSummary(Date.now())).get('term-d')?.live === true;
  t.ok(await until(rows, 15_000), 'the join\'s first rows have committed: visible to readers');
  t.ok(await until(() => held > 0, 10_000), 'its first message out waits for them to be on disk');
  t.notOk(await settled(joining), 'the join is not answered meanwhile');
  t.notOk((await store.membershipsOf('term-d')).some((m) => m.keyId > 0), 'nor does it go on to the rows that follow its keys');
  open();
  const vpns = await joining;
  t.same(vpns.map((v) => v.id), ['plant'], 'answered, with its keys, once they are');
});
