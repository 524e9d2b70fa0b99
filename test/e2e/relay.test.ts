/**
 * Embodiment 2 on real sockets: relays with TCP ports, plaintext terminals
 * behind them, a terminal; port states RESTRICTED → FORWARDING → RESTRICTED.
 */
import t from 'tap';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { RawPorts } from '../../runtime/node/raw-ports.js';
import { Tunnels } from '../../runtime/node/tunnel.js';
import { agent, controlPlane, device, tempDir, testPlatform, until, vpnWithUsers } from '../helpers/control-plane.js';
import { addUser, deleteVpn } from '../../servers/admin.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { RelayAgent } from '../../device/relay.js';
import { encodePortFrame } from '../../protocol/port-frame.js';
import { connect, plain, register, startRelay } from '../helpers/relay.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

t.test('relay ports: restricted, forwarding, restricted again', async (t) => {
  const data = tempDir(t);
  const cp = await controlPlane(data);
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', 5020, { alice: 'alice-password', pam: 'pam-password' });
  await addUser(cp.store, 'nogrant', 'nogrant-password');

  const { relay, bound } = await startRelay(t, cp, 'relay-1');
  t.same(relay.status().map((p) => p.state), ['RESTRICTED', 'RESTRICTED'], 'a new relay has every port RESTRICTED');
  const r2 = await startRelay(t, cp, 'relay-2');

  const termGot: string[] = [];
  const term = agent(await device(cp, 'term-a'), cp.brokerUrl, { onData: (v, f, p) => termGot.push(`${v}:${f}:${dec.decode(p)}`) });
  t.teardown(() => term.stop());
  await term.start();
  await term.configure();
  await term.join('alice', 'alice-password');

  const p1 = await plain(t, cp, 'plain-1', 'relay-1', 'p1', bound.p1!);
  p1.p.send('plant', 'term-a', enc.encode('too early'));
  t.ok(await until(() => (relay.status()[0]!.dropped.restricted ?? 0) === 1, 1000), 'data before the join is dropped and counted');
  t.same(termGot, [], 'the peer receives nothing');

  const cfg = await p1.p.configure();
  t.equal(cfg.deviceId, 'plain-1', 'config passes while RESTRICTED (S201–S204)');
  const vpns = await p1.p.join('pam', 'pam-password');
  t.same(vpns.map((v) => v.id), ['plant'], 'join passes while RESTRICTED');
  t.equal(relay.status()[0]!.state, 'FORWARDING', 'the port is FORWARDING once keys are registered');
  t.same(relay.status()[0]!.vpns, ['plant'], 'the relay holds the key for the port');
  const info = await cp.store.getNetworkInfo('plain-1');
  t.match(info, { relayId: 'relay-1', relayPort: 'p1' }, 'network info (1f): which relay port plain-1 sits behind');

  p1.p.send('plant', 'term-a', enc.encode('hello from plain'));
  await term.send('plant', 'plain-1', enc.encode('hello plain'));
  t.ok(await until(() => termGot.length === 1 && p1.got.length === 1), 'both directions arrive');
  t.same(termGot, ['plant:plain-1:hello from plain'], 'terminal ← plaintext terminal behind relay, intact');
  t.same(p1.got, ['plant:term-a:hello plain'], 'plaintext terminal ← terminal, intact');

  // relay ↔ relay
  const p3 = await plain(t, cp, 'plain-3', 'relay-2', 'p1', r2.bound.p1!);
  await p3.p.configure();
  await p3.p.join('pam', 'pam-password');
  p1.p.send('plant', 'plain-3', enc.encode('relay to relay'));
  p3.p.send('plant', 'plain-1', enc.encode('and back'));
  t.ok(await until(() => p3.got.length === 1 && p1.got.length === 2), 'relay ↔ relay frames arrive');
  t.same([p3.got[0], p1.got[1]], ['plant:plain-1:relay to relay', 'plant:plain-3:and back'], 'intact both ways');

  // The relay keeps the port's ticket (issue 21): the terminal joins again without its password.
  t.ok(await relay.tickets.has('plain-1/pam'), "the relay holds plain-1's ticket for pam");
  const again = await p1.p.join('pam');
  t.same(again.map((v) => v.id), ['plant'], 'a join with no password goes through on the ticket');
  const noTicket = await plain(t, cp, 'plain-4', 'relay-2', 'p2', r2.bound.p2!);
  await noTicket.p.configure();
  await t.rejects(noTicket.p.join('pam'), /no ticket for plain-4\/pam and no password/, 'a terminal with neither is refused by its relay, which says why');

  // Claiming another port's identity, and a user without the VPN.
  const cfg2 = await register(cp, 'plain-2', 'relay-1', 'p2');
  const liar = await connect(t, { ...cfg2, id: 'plain-1' }, bound.p2!);
  await t.rejects(liar.p.configure(), /plain-1 is not bound to port p2 of relay-1/, 'a frame claiming another port\'s identity is refused');
  liar.sock.destroy();
  const p2 = await connect(t, cfg2, bound.p2!);
  await p2.p.configure();
  await t.rejects(p2.p.join('nogrant', 'nogrant-password'), /nogrant is not a member of any VPN/, 'a user without the VPN cannot join');
  t.equal(relay.status()[1]!.state, 'RESTRICTED', 'that port stays RESTRICTED');

  // Malformed, oversize and truncated frames: dropped, the port keeps working.
  const before = { ...relay.status()[0]!.dropped };
  p1.sock.write(Buffer.from([0, 0, 0, 3, 0xff, 0xff, 0xff])); // not CBOR
  p1.sock.write(encodePortFrame({ type: 'refused', body: {} })); // not for the relay
  p1.sock.write(Buffer.concat([Buffer.from([0x7f, 0, 0, 0]), Buffer.alloc(10)])); // oversize length
  t.ok(await until(() => Object.values(relay.status()[0]!.dropped).reduce((a, b) => a + b, 0) >= Object.values(before).reduce((a, b) => a + b, 0) + 3), 'bad frames dropped and counted by reason');
  t.match(relay.status()[0]!.dropped, { decode: 1, type: 1, size: 1 }, 'reasons: decode, type, size');
  const p1b = await connect(t, p1.p.cfg, bound.p1!); // a fresh link to the port (the oversize one would swallow 2 GiB)
  p1b.p.send('plant', 'term-a', enc.encode('still working'));
  t.ok(await until(() => termGot.includes('plant:plain-1:still working')), 'the port and the relay keep working');

  // kagi vpn delete: another connection to the data dir, as the CLI does.
  const admin = new SqliteStore(data);
  const t0 = Date.now();
  await deleteVpn(admin, 'plant');
  await admin.close();
  t.ok(await until(() => relay.status()[0]!.state === 'RESTRICTED', 1000), `port RESTRICTED within one second (${Date.now() - t0} ms)`);
  t.same(relay.status()[0]!.vpns, [], 'the relay holds no key for the deleted VPN');
  t.ok(await until(() => p1b.restricted.includes('plant') || p1.restricted.includes('plant')), 'the plaintext terminal is told');
  const dropped = relay.status()[0]!.dropped.restricted ?? 0;
  p1b.p.send('plant', 'term-a', enc.encode('after delete'));
  t.ok(await until(() => (relay.status()[0]!.dropped.restricted ?? 0) === dropped + 1, 1000), 'data on the port is dropped again');
  await new Promise((r) => setTimeout(r, 200));
  t.notOk(termGot.includes('plant:plain-1:after delete'), 'and never reaches the terminal');
});

t.test('a raw port: the relay joins for a legacy device and tunnels its TCP', async (t) => {
  const echo = createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.teardown(() => echo.close());
  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'scada', (echo.address() as AddressInfo).port, { bob: 'bob-password', legacy: 'legacy-password' });
  const b = await device(cp, 'relay-r', 'relay');
  const relay = new RelayAgent(b, ['p1', 'p2'], testPlatform(cp.brokerUrl), { timeoutMs: 3000, attempts: 2 });
  t.teardown(() => relay.stop());
  await relay.start();
  const plc = await register(cp, 'plc-1', 'relay-r', 'p2');
  const raw = new RawPorts(relay, [{ port: 'p2', id: plc.id, mac: plc.mac, user: 'legacy', password: 'legacy-password', vpn: 'scada', peer: 'term-b' }], [{ name: 'p2', kind: 'tcp', host: '127.0.0.1', port: 0 }]);
  t.teardown(() => raw.stop());

  let tun: Tunnels | undefined;
  const term = agent(await device(cp, 'term-b'), cp.brokerUrl, { onData: (v, f, p) => tun?.onData(v, f, p) });
  tun = Tunnels.forAgent(term, [], []);
  t.teardown(async () => {
    await tun!.stop();
    await term.stop();
  });
  await term.start();
  await term.configure();
  await term.join('bob', 'bob-password');
  await tun.start();

  const { p2 } = await raw.start();
  t.equal(relay.status()[1]!.state, 'FORWARDING', 'the relay joined for the legacy device: port FORWARDING');
  const reply = await new Promise<string>((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port: p2! }, () => s.end('modbus bytes'));
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
  t.equal(reply, 'modbus bytes', "the legacy device's TCP reached the echo service beside term-b and came back");
});
