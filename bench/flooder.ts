/**
 * One hostile device flooding the broker as fast as TCP lets it: garbage
 * publishes (QoS 0, no acknowledgement to wait for) to a service topic,
 * reconnecting with a fresh CONNECT password whenever the broker closes
 * it. A process of its own, as a real insider is: the flood test and
 * bench:flood start it, so its CPU is not the control plane's.
 *
 *   node dist/bench/flooder.js BROKER_URL DEVICE_ID SECRET_KEY_HEX BROKER_PUBLIC_KEY_HEX [TOPIC] [BYTES]
 *
 * Every second it prints a line `sent N connects M` (totals) on stdout.
 * Runs until killed.
 */
import mqtt from 'mqtt';
import { once } from 'node:events';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { connectKey, connectPassword } from '../protocol/connect-auth.js';
import { fromHex } from '../protocol/bytes.js';
import { drawEra } from '../protocol/replay.js';
import { topics } from '../protocol/topics.js';

const [url, id, secretHex, brokerHex, topic = topics.service('config', 'request'), size = '1000'] = process.argv.slice(2);
if (!url || !id || !secretHex || !brokerHex) {
  console.error('usage: flooder BROKER_URL DEVICE_ID SECRET_KEY_HEX BROKER_PUBLIC_KEY_HEX [TOPIC] [BYTES]');
  process.exit(2);
}
const crypto = nodeCrypto();
const key = connectKey(crypto, fromHex(secretHex), fromHex(brokerHex));
const payload = Buffer.alloc(Number(size), 0xa5);
let sent = 0;
let connects = 0;
setInterval(() => console.log(`sent ${sent} connects ${connects}`), 1000);

async function floodOnce(): Promise<void> {
  // A fresh era per connection: no counter to keep, none reused.
  const password = Buffer.from(connectPassword(crypto, key, id!, 1, drawEra((n) => crypto.randomBytes(n))));
  const c = await mqtt.connectAsync(url!, { clientId: id, username: 'kagi', password, reconnectPeriod: 0, connectTimeout: 5000 });
  connects++;
  const stream = c.stream as unknown as NodeJS.WritableStream & { writableNeedDrain: boolean };
  const gone = new Promise<void>((r) => c.once('close', () => r()));
  while (c.connected) {
    for (let i = 0; i < 100 && c.connected; i++, sent++) c.publish(topic!, payload, { qos: 0 });
    // As fast as the socket takes them, no faster (what TCP lets through is the flood).
    if (stream.writableNeedDrain) await Promise.race([once(stream as unknown as NodeJS.EventEmitter, 'drain'), gone]);
    else await new Promise((r) => setImmediate(r));
  }
  c.end(true);
}

for (;;) await floodOnce().catch(() => new Promise((r) => setTimeout(r, 50)));
