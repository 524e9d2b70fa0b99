/**
 * Refusals, each with a clear message and no keys issued: unknown device,
 * MAC not matching its key, wrong password, user without the VPN, replayed
 * join, a second client trying to take over a connected device's id, and
 * a board with storage none: each boot's first CONNECT taken, no captured
 * password twice (decision 62).
 */
import t from 'tap';
import mqtt from 'mqtt';
import { agent, controlPlane, crypto, device, tempDir, testPlatform, typeOf, until, vpnWithUsers } from '../helpers/control-plane.js';
import { TerminalAgent } from '../../device/terminal.js';
import { MemorySecretStore } from '../../device/tickets.js';
import { deadline } from '../helpers/deadline.js';
import { addUser, grant } from '../../servers/admin.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { toHex } from '../../protocol/bytes.js';
import { ConnectCredentials, connectKey, connectPassword } from '../../protocol/connect-auth.js';
import { MemoryNumberStore } from '../../protocol/store.js';
import { topics } from '../../protocol/topics.js';

t.test('refusals', async (t) => {
  const lines: string[] = [];
  const dataDir = tempDir(t);
  const cp = await controlPlane(dataDir, { lines });
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password' });
  await addUser(cp.store, 'mallory', 'mallory-password'); // no grant
  /** Keys issued to term-p, the device of the refusals that must issue none. */
  const keysIssued = () => lines.filter((l) => l.includes('keys: term-p holds ')).length;

  t.test('unknown device: the broker refuses its CONNECT', async (t) => {
    const b = await device(cp, 'term-x');
    const ghost = { ...b, id: 'ghost', secretKey: crypto.generateKeyPair().secretKey };
    const g = agent(ghost, cp.brokerUrl);
    await t.rejects(g.start(), /broker refused ghost/, 'agent says the broker refused it');
    t.match(cp.broker!.refusals.at(-1), { clientId: 'ghost', reason: 'unknown client id' }, 'broker names the reason');
  });

  t.test('MAC not matching the device key', async (t) => {
    const b = await device(cp, 'term-m');
    const a = agent({ ...b, mac: '02:99:99:99:99:99' }, cp.brokerUrl);
    t.teardown(() => a.stop());
    await a.start();
    await t.rejects(a.configure(), { name: 'RefusedError', message: /MAC 02:99:99:99:99:99 does not match device term-m/ }, 'refused with the reason');
    t.equal(a.state, 'unconfigured', 'stays unconfigured');
  });

  t.test('a join skips the config request, the first one with the password and a re-join on a ticket, and has its MAC checked (decisions 122, 138)', async (t) => {
    const b = await device(cp, 'term-k');
    const wallet = new MemorySecretStore(); // the device's FILE.tickets, across its restarts
    const make = (bundle: typeof b, sent: string[]) => new TerminalAgent(bundle, { ...testPlatform(cp.brokerUrl, { spy: (_topic, bytes) => sent.push(typeOf(bytes) ?? '?') }), secrets: wallet }, { timeoutMs: deadline(3000), attempts: 2 });

    // A first join as a wrong MAC, from unconfigured: refused as its config request would be.
    const wrongFirst = make({ ...b, mac: '02:99:99:99:99:97' }, []);
    t.teardown(() => wrongFirst.stop());
    await wrongFirst.start();
    await t.rejects(wrongFirst.join('alice', 'alice-password'), { name: 'RefusedError', code: 'mac', message: /MAC 02:99:99:99:99:97 does not match device term-k/ }, 'a first join with another MAC is refused as a config request with it is');
    t.equal(wrongFirst.state, 'unconfigured', 'back to unconfigured');
    t.same(await cp.store.membershipsOf('term-k'), [], 'nothing recorded for it');
    await wrongFirst.stop();

    const first: string[] = [];
    const a = make(b, first);
    await a.start();
    t.notOk(a.needsConfig('alice'), 'a user to join: no config request needed, even without a ticket');
    t.ok(a.needsConfig(undefined), 'no user: the config request alone');
    await t.rejects(a.join('alice', 'not-her-password'), { name: 'RefusedError', code: 'password' }, 'a wrong password from unconfigured: refused');
    t.equal(a.state, 'unconfigured', 'and back to unconfigured');
    t.same((await a.join('alice', 'alice-password')).map((v) => v.id), ['plant'], 'the first join, with the password, from unconfigured');
    t.equal(a.state, 'joined', 'joined');
    t.ok(await a.tickets.has('alice'), 'it holds a ticket');
    t.match(await cp.store.getNetworkInfo('term-k'), { deviceId: 'term-k' }, 'where it is recorded, as a config request would');
    await a.stop({ leave: false });
    t.same(first.filter((x) => x === 'config.request' || x === 'join.request'), ['join.request', 'join.request'], 'no config request: the joins alone');

    const again: string[] = [];
    const r = make(b, again);
    t.teardown(() => r.stop());
    await r.start();
    t.notOk(r.needsConfig('alice'), 'holding a ticket: no config request needed');
    t.same((await r.join('alice')).map((v) => v.id), ['plant'], 're-joined plant on the ticket from unconfigured');
    t.equal(r.state, 'joined', 'joined');
    t.same(again.filter((x) => x === 'config.request' || x === 'join.request'), ['join.request'], 'one request: the join');
    await r.stop({ leave: false });

    const wrongMac = make({ ...b, mac: '02:99:99:99:99:98' }, []);
    t.teardown(() => wrongMac.stop());
    await wrongMac.start();
    await t.rejects(wrongMac.join('alice'), { name: 'RefusedError', code: 'mac', message: /MAC 02:99:99:99:99:98 does not match device term-k/ }, 'a re-join with another MAC is refused as a config request with it is');
    t.equal(wrongMac.state, 'unconfigured', 'back to unconfigured');
  });

  t.test('wrong password, user without the VPN, replayed join', async (t) => {
    const b = await device(cp, 'term-p');
    const sent: { topic: string; bytes: Uint8Array }[] = [];
    let publish!: (topic: string, bytes: Uint8Array) => Promise<void>;
    const a = agent(b, cp.brokerUrl, { spy: (topic, bytes, send) => (sent.push({ topic, bytes }), (publish = send)) });
    t.teardown(() => a.stop());
    await a.start();
    await a.configure();
    await t.rejects(a.join('alice', 'not-her-password'), { name: 'RefusedError', message: 'wrong user id or password', code: 'password' }, 'wrong password');
    await t.rejects(a.join('nobody', 'whatever-pass'), { name: 'RefusedError', message: 'wrong user id or password', code: 'password' }, 'unknown user: same message');
    await t.rejects(a.join('mallory', 'mallory-password'), { name: 'RefusedError', message: /mallory is not a member of any VPN/ }, 'user without the VPN');
    t.equal(a.state, 'configured', 'still only configured');
    t.equal(keysIssued(), 0, 'no keys issued for any of these');
    t.same(await cp.store.membershipsOf('term-p'), [], 'no membership recorded');

    await a.join('alice', 'alice-password');
    t.equal(keysIssued(), 1, 'the good join gets keys once');
    const join = sent.filter((s) => s.topic === topics.service('config', 'join')).at(-1)!;
    await publish(join.topic, join.bytes); // the same sealed join again
    // Within the minute its answer is kept, the config server sends that
    // answer again (decision 113); a copy that gets past it (another
    // instance, or the first still under way) is the auth server's replay.
    const again = /config: join\.request from term-p again: its answer sent again|refused user\.join: replayed join\.request from term-p/;
    t.ok(await until(() => lines.some((l) => again.test(l))), 'the replayed join is answered with the first answer, or refused as a replay');
    t.equal(keysIssued(), 1, 'no keys issued for the replay');
    t.equal((await cp.store.membershipsOf('term-p')).length, 1, 'still exactly one membership');
  });

  t.test('an admin change takes effect on the running control plane', async (t) => {
    const b = await device(cp, 'term-g');
    const a = agent(b, cp.brokerUrl);
    t.teardown(() => a.stop());
    await a.start();
    await a.configure();
    await t.rejects(a.join('mallory', 'mallory-password'), { name: 'RefusedError' }, 'mallory has no VPN yet');
    // What `kagi vpn grant` does: another connection to the same data dir.
    const admin = new SqliteStore(dataDir);
    await grant(admin, 'plant', 'mallory');
    await admin.close();
    const vpns = await a.join('mallory', 'mallory-password');
    t.same(vpns.map((v) => v.id), ['plant'], 'the grant works without a restart');
  });

  t.test('a second client cannot take over a connected device id', async (t) => {
    const b = await device(cp, 'term-t');
    const a = agent(b, cp.brokerUrl);
    t.teardown(() => a.stop());
    await a.start();
    const before = cp.broker!.refusals.length;
    for (const password of [Buffer.alloc(24), Buffer.from(toHex(new Uint8Array(10)))]) {
      const c = mqtt.connect(cp.brokerUrl, { clientId: 'term-t', username: 'kagi', password, reconnectPeriod: 0 });
      const err = await new Promise<Error>((resolve) => c.once('error', resolve));
      c.end(true);
      t.match(err.message, /Not authorized/, 'CONNACK: not authorized');
    }
    // A password that was valid once (captured on the wire) never works twice.
    const r = await device(cp, 'term-r');
    const key = connectKey(crypto, r.secretKey, r.services.broker);
    const captured = Buffer.from(connectPassword(crypto, key, 'term-r', 1, 0));
    const first = await mqtt.connectAsync(cp.brokerUrl, { clientId: 'term-r', username: 'kagi', password: captured, reconnectPeriod: 0 });
    t.ok(first.connected, 'a fresh valid password connects');
    await first.endAsync();
    const replay = mqtt.connect(cp.brokerUrl, { clientId: 'term-r', username: 'kagi', password: captured, reconnectPeriod: 0 });
    const replayErr = await new Promise<Error>((resolve) => replay.once('error', resolve));
    replay.end(true);
    t.match(replayErr.message, /Not authorized/, 'the same password again is refused');
    t.match(cp.broker!.refusals.at(-1), { clientId: 'term-r', reason: 'connect counter reused' }, 'as a reused counter');
    t.equal(cp.broker!.refusals.length, before + 3, 'three refusals by the broker');
    t.equal(a.state, 'unconfigured', 'the real device is untouched');
    await a.configure();
    t.equal(a.state, 'configured', 'and keeps working');
  });

  t.test('a board with storage none: every boot connects at once, no captured password twice', async (t) => {
    const b = await device(cp, 'term-n');
    const boot = () => new ConnectCredentials(crypto, 'term-n', b.secretKey, b.services.broker, 'counter', new MemoryNumberStore());
    const connect = (password: Uint8Array) => mqtt.connectAsync(cp.brokerUrl, { clientId: 'term-n', username: 'kagi', password: Buffer.from(password), reconnectPeriod: 0 });
    const refused = async (password: Uint8Array) => {
      const c = mqtt.connect(cp.brokerUrl, { clientId: 'term-n', username: 'kagi', password: Buffer.from(password), reconnectPeriod: 0 });
      const err = await new Promise<Error>((resolve) => c.once('error', resolve));
      c.end(true);
      return err.message;
    };
    const captured: Uint8Array[] = [];
    for (let n = 1; n <= 3; n++) {
      const password = (await boot().password())!; // counter 1 after every boot: nothing was kept
      const c = await connect(password);
      t.ok(c.connected, `boot ${n}: its first CONNECT is accepted`);
      await c.endAsync();
      captured.push(password);
    }
    for (const [i, password] of captured.entries()) {
      t.match(await refused(password), /Not authorized/, `boot ${i + 1}'s password replayed: refused`);
      t.match(cp.broker!.refusals.at(-1), { clientId: 'term-n', reason: 'connect counter reused' }, 'as a reused counter of its era');
    }
  });
});
