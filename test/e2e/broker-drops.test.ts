/**
 * kagi up on an external Mosquitto that drops messages (servers/
 * broker-drops.ts): a private Mosquitto with a queue of 5 per client and
 * $SYS every second; a client that stops reading while 200 QoS 1 messages
 * are published to it makes Mosquitto drop most of them, telling neither
 * side. The config service hears Mosquitto's count, exports it in
 * kagi_external_broker_dropped and says so in a warning that names the
 * setting to raise.
 */
import t from 'tap';
import mqtt from 'mqtt';
import { controlPlane, tempDir, until } from '../helpers/control-plane.js';
import { haveMosquittoBinary, MOSQUITTO_BINARY_SKIP, startMosquitto } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { deadline } from '../helpers/deadline.js';

t.test('what Mosquitto drops is counted and said', { skip: haveMosquittoBinary ? false : MOSQUITTO_BINARY_SKIP }, async (t) => {
  const dir = tempDir(t);
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  const broker = (await startMosquitto(port, { dir, lines: ['max_queued_messages 5', 'sys_interval 1'] }))!;
  t.teardown(() => void broker.kill('SIGKILL'));
  const lines: string[] = [];
  const cp = await controlPlane(tempDir(t), { brokerUrl: url, lines });
  t.teardown(() => cp.close());
  t.equal(cp.metrics.value('kagi_external_broker_dropped'), 0, 'nothing dropped yet');

  // A subscriber that stops reading: no PUBACKs, so past Mosquitto's 20 in flight and 5 queued, the rest go.
  const slow = await mqtt.connectAsync(url, { clientId: 'slow-reader', reconnectPeriod: 0 });
  t.teardown(() => slow.end(true));
  await slow.subscribeAsync('flood/x', { qos: 1 });
  slow.stream.pause();
  const pub = await mqtt.connectAsync(url, { clientId: 'flooder', reconnectPeriod: 0 });
  t.teardown(() => pub.end(true));
  for (let i = 0; i < 200; i++) await pub.publishAsync('flood/x', Buffer.from(String(i)), { qos: 1 });

  t.ok(await until(() => cp.metrics.value('kagi_external_broker_dropped') >= 100, deadline(15_000)), `the count is exported (${cp.metrics.value('kagi_external_broker_dropped')})`);
  const said = lines.filter((l) => /^warn: broker: dropped \d+ messages for clients whose queue was full/.test(l));
  t.ok(said.length >= 1, 'and said in a warning');
  t.match(said[0], /max_queued_messages/, 'which names the setting to raise');
});
