/**
 * A connection that drops while a request is out is a normal event: the
 * broker loses what it sent a clean-session client in between (Mosquitto's
 * dynsec drops a client whose roles change, which is what a join does).
 * Whoever has a request out sends the same bytes again once the other end
 * is back (Peer.resend): a service when the device says "online", the
 * agent at its own reconnect. On the real embedded broker, with the drop
 * made by the broker (KagiBroker.disconnect) and the message lost with it.
 *
 * One join attempt, and a keys timeout longer than the test waits: without
 * the resend each join here fails ('keys' after the timeout, or no answer).
 */
import t from 'tap';
import { agent, controlPlane, device, logged, tempDir, typeOf, vpnWithUsers } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';
import type { MessageType } from '../../protocol/messages.js';

/** The first message of `type` crossing in `dir` is lost, and the broker drops the agent's connection with it. */
function dropOnce(cpBroker: { disconnect(id: string): boolean }, id: string, dir: 'in' | 'out', type: MessageType) {
  const seen = { lost: 0, sent: [] as string[] };
  return {
    seen,
    spy: (_topic: string, bytes: Uint8Array) => {
      if (typeOf(bytes) === 'join.request') seen.sent.push(Buffer.from(bytes).toString('hex'));
    },
    lose: (d: 'in' | 'out', _topic: string, bytes: Uint8Array) => {
      if (d !== dir || seen.lost > 0 || typeOf(bytes) !== type) return false;
      seen.lost++;
      cpBroker.disconnect(id);
      return true;
    },
  };
}

const cases = [
  // A join's keys: a keys.update on the join's own keys channel (decision 134).
  ['in', 'keys.update', 'the key server sends it again once the agent is back'],
  ['out', 'join.request', 'the agent sends it again once it is back'],
  // The answer lost: the agent's copy of its request is answered again (servers/config/answers.ts).
  ['in', 'join.response', 'the agent sends its request again and the config server answers the copy the same'],
  ['in', 'config.response', 'the agent sends its request again and the config server answers the copy the same'],
] as const;
for (const [dir, type, what] of cases) {
  t.test(`${type} lost with the agent's connection: ${what}`, async (t) => {
    const lines: string[] = [];
    const cp = await controlPlane(tempDir(t), { timeoutMs: deadline(20_000), lines });
    t.teardown(() => cp.close());
    await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
    const b = await device(cp, 'term-r');
    const drop = dropOnce(cp.broker!, 'term-r', dir, type);
    const a = agent(b, cp.brokerUrl, { timeoutMs: deadline(20_000), attempts: 1, spy: drop.spy, lose: drop.lose });
    t.teardown(() => a.stop());
    await a.start();
    await a.configure();
    const joined = await a.join('alice', 'alice-password');
    t.same(joined.map((v) => v.id), ['plant'], 'joined plant in one attempt');
    t.equal(drop.seen.lost, 1, `one ${type} was lost, with the connection`);
    t.ok(drop.seen.sent.length >= 1 && new Set(drop.seen.sent).size === 1, 'every join.request the agent published is the same bytes (resent, never sealed again)');
    if (dir === 'out' || type === 'join.response') t.ok(drop.seen.sent.length >= 2, 'the agent published its join.request again after reconnecting');
    if (type.endsWith('.response')) t.ok(logged(lines, new RegExp(`config: ${type.replace('response', 'request')} from term-r again: its answer sent again`)).length >= 1, 'the config server answered the copy from what it sent');
  });
}
