/**
 * The storm bench's floor, in its own process as `kagi up` is: plain aedes
 * on an ephemeral port, or the broker at `--broker URL` (a Mosquitto the
 * bench started), and one responder that echoes `floor/req/ID` to
 * `floor/res/ID`. Prints "floor: URL" when ready; runs until killed.
 */
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { floorBroker, noDelay } from './common.js';

const { values } = parseArgs({ options: { broker: { type: 'string' } } });
const url = values.broker ?? (await floorBroker()).url;
const responder = noDelay(await mqtt.connectAsync(url, { clientId: 'floor-svc' }));
await responder.subscribeAsync('floor/req/+', { qos: 1 });
responder.on('message', (topic, payload) => void responder.publish(`floor/res/${topic.split('/')[2]}`, payload, { qos: 1 }));
console.log(`floor: ${url}`);
