/**
 * broker/duplicate-filter.ts. On bare aedes: a retained QoS 1 message
 * followed, in the same turn, by a plain QoS 0 one reaches a subscriber
 * out of number order, and aedes's duplicate filter drops the retained one
 * without a trace (half of them here); with the filter off, every one
 * arrives. Then the same through kagi's embedded broker to a device's
 * inbox over a real connection: every one arrives.
 */
import t from 'tap';
import type { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { turnOffDuplicateFilter, type FilteringBroker } from '../../broker/duplicate-filter.js';
import { controlPlane, device, rawDevice, tempDir } from '../helpers/control-plane.js';
import { topics } from '../../protocol/topics.js';
import { deadline } from '../helpers/deadline.js';
import { plainAedes } from '../helpers/aedes.js';

const PAIRS = 20;

/** Publish PAIRS × (retained QoS 1, then plain QoS 0) on `topic`, each pair in one turn; the payloads `sub` received up to a marker sent after them. */
async function interleave(aedes: Aedes, sub: MqttClient, topic: string): Promise<string[]> {
  const got: string[] = [];
  const marker = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out: got ${got.length}`)), deadline(10_000));
    sub.on('message', (_tp, payload) => {
      if (payload.toString() === 'marker') (clearTimeout(timer), resolve());
      else got.push(payload.toString());
    });
  });
  const publish = (payload: string, qos: 0 | 1, retain: boolean) =>
    aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain, dup: false }, () => undefined);
  for (let i = 0; i < PAIRS; i++) {
    publish(`r${i}`, 1, true);
    publish(`p${i}`, 0, false);
  }
  // Once everything before it is delivered (next turns), a marker: one publisher, one subscriber, in order.
  await new Promise((r) => setTimeout(r, 0));
  await new Promise((r) => setImmediate(r));
  publish('marker', 1, false);
  await marker;
  return got;
}

async function bareAedes(t: { teardown(fn: () => unknown): void }, filterOff: boolean): Promise<string[]> {
  const { aedes, url } = await plainAedes(t);
  if (filterOff) turnOffDuplicateFilter(aedes as unknown as FilteringBroker);
  const sub = await mqtt.connectAsync(url, { clientId: 'sub' });
  t.teardown(() => sub.endAsync());
  await sub.subscribeAsync('t/#', { qos: 1 });
  return interleave(aedes, sub, 't/x');
}

t.test('bare aedes drops overtaken messages; with the filter off every one arrives', async (t) => {
  const filtered = await bareAedes(t, false);
  t.ok(filtered.length < 2 * PAIRS, `with aedes's filter, messages are lost (${filtered.length} of ${2 * PAIRS} arrived): the bug this guards against`);
  const off = await bareAedes(t, true);
  t.equal(off.length, 2 * PAIRS, 'with the filter off, every message arrives');
  t.same([...new Set(off)].length, 2 * PAIRS, 'each once');
});

t.test("kagi's embedded broker delivers every message to a device's inbox", async (t) => {
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  const b = await device(cp, 'inbox-dev');
  const c = await rawDevice(cp, b);
  t.teardown(() => c.end(true));
  await c.subscribeAsync(topics.inbox(b.id), { qos: 1 });
  const got = await interleave(cp.broker!.aedes, c, topics.inbox(b.id));
  t.equal(got.length, 2 * PAIRS, `all ${2 * PAIRS} arrived`);
});
