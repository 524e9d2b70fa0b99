/**
 * The storm bench's floor, in its own process as `kagi up` is: plain aedes
 * on an ephemeral port and one responder that echoes `floor/req/ID` to
 * `floor/res/ID`. Prints "floor: URL" when ready; runs until killed.
 */
import mqtt from 'mqtt';
import { floorBroker, noDelay } from './common.js';

const broker = await floorBroker();
const responder = noDelay(await mqtt.connectAsync(broker.url, { clientId: 'floor-svc' }));
await responder.subscribeAsync('floor/req/+', { qos: 1 });
responder.on('message', (topic, payload) => void responder.publish(`floor/res/${topic.split('/')[2]}`, payload, { qos: 1 }));
console.log(`floor: ${broker.url}`);
