/**
 * TCP through the VPN: terminal A listens, terminal B connects to an echo
 * service; bytes arrive intact both ways and close propagates.
 */
import t from 'tap';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { agent, controlPlane, device, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { Tunnels } from '../../runtime/node/tunnel.js';
import type { TerminalAgent } from '../../device/terminal.js';

t.test('tunnel carries a TCP stream both ways', async (t) => {
  const echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.teardown(() => echo.close());
  const echoPort = (echo.address() as AddressInfo).port;

  const cp = await controlPlane(tempDir(t));
  t.teardown(() => cp.close());
  await vpnWithUsers(cp, 'plant', echoPort, { alice: 'alice-password', bob: 'bob-password' });
  const tunnels: Tunnels[] = [];
  async function joined(id: string, user: string, listen: boolean): Promise<[TerminalAgent, Tunnels]> {
    let tun: Tunnels | undefined;
    const a = agent(await device(cp, id), cp.brokerUrl, { onData: (v, f, p) => tun?.onData(v, f, p) });
    tun = Tunnels.forAgent(a, listen ? [{ vpn: 'plant', localPort: 0, peer: 'term-b' }] : [], []);
    tunnels.push(tun);
    t.teardown(async () => {
      await tun!.stop();
      await a.stop();
    });
    await a.start();
    await a.configure();
    await a.join(user, `${user}-password`);
    return [a, tun];
  }
  const [, ta] = await joined('term-a', 'alice', true);
  await joined('term-b', 'bob', false);
  const [port] = await ta.start();
  await tunnels[1]!.start();

  const sent = randomBytes(300_000);
  const sock = createConnection({ host: '127.0.0.1', port: port! });
  const chunks: Buffer[] = [];
  sock.on('data', (c) => chunks.push(c));
  const ended = new Promise<void>((r) => sock.on('end', r));
  sock.write(sent.subarray(0, 1000));
  sock.write(sent.subarray(1000));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${Buffer.concat(chunks).length} bytes came back`)), 15_000);
    sock.on('data', () => {
      if (Buffer.concat(chunks).length >= sent.length) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  t.ok(Buffer.concat(chunks).equals(sent), '300 KB echoed through the VPN intact');
  sock.end();
  await ended;
  t.pass('our close reached the echo service and its close came back');
  const open = () => new Promise<number>((r) => echo.getConnections((_e, n) => r(n)));
  await until(async () => (await open()) === 0, 5000);
  t.equal(await open(), 0, 'the connection to the echo service is fully closed');

  // Half-close: send and FIN at once; the reply must still come back.
  const reply = await new Promise<string>((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port: port! }, () => s.end('ping'));
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
  t.equal(reply, 'ping', 'a half-closed connection still gets its reply');
});
