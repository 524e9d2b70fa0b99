/**
 * The embedded broker's retained-message index (broker/retained-index.ts)
 * on real aedes and real MQTT.js clients: an exact subscription gets the
 * retained message from the index, a wildcard one from aedes's scan, an
 * empty payload deletes from both, and a replaced message is the new one.
 */
import t from 'tap';
import mqtt from 'mqtt';
import { indexRetained } from '../../broker/retained-index.js';
import { deadline } from '../helpers/deadline.js';
import { plainAedes } from '../helpers/aedes.js';

t.test('retained messages through the index', async (t) => {
  const { aedes, url } = await plainAedes(t);
  indexRetained((aedes as unknown as { persistence: Parameters<typeof indexRetained>[0] }).persistence);
  const pub = await mqtt.connectAsync(url, { clientId: 'pub' });
  t.teardown(() => pub.endAsync());
  for (const [topic, text] of [['a/1/state', 'online'], ['a/2/state', 'offline'], ['a/1/state', 'offline']] as const) {
    await pub.publishAsync(topic, text, { qos: 1, retain: true });
  }

  /** What a fresh subscriber to `patterns` gets as retained, until `want` messages arrived. */
  async function retained(patterns: string[], want: number): Promise<string[]> {
    const c = await mqtt.connectAsync(url, { clientId: `sub-${patterns.join(',')}-${want}` });
    const got: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${want} retained on ${patterns}: got ${got}`)), deadline(5000));
      c.on('message', (topic, payload, packet) => {
        if (packet.retain) got.push(`${topic}=${payload.toString()}`);
        if (got.length === want) (clearTimeout(timer), resolve());
      });
    });
    await c.subscribeAsync(patterns, { qos: 1 });
    if (want > 0) await done;
    // A marker published after the subscription comes after any retained one: nothing more is on its way.
    await c.subscribeAsync('marker', { qos: 1 });
    const marker = new Promise<void>((r) => c.on('message', (topic) => topic === 'marker' && r()));
    await pub.publishAsync('marker', 'x', { qos: 1 });
    await marker;
    await c.endAsync();
    return got.sort();
  }

  t.same(await retained(['a/1/state'], 1), ['a/1/state=offline'], 'an exact subscription gets the latest retained message');
  t.same(await retained(['a/+/state'], 2), ['a/1/state=offline', 'a/2/state=offline'], 'a wildcard one gets every match (aedes scan)');
  t.same(await retained(['a/1/state', 'a/3/state'], 1), ['a/1/state=offline'], 'several exact topics: only those retained');
  await pub.publishAsync('a/1/state', '', { qos: 1, retain: true });
  t.same(await retained(['a/1/state'], 0), [], 'an empty payload deletes it from the index');
  t.same(await retained(['a/+/state'], 1), ['a/2/state=offline'], 'and from aedes');
});
