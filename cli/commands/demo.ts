/**
 * kagi demo: embodiment 1 in one process on loopback ephemeral ports, each
 * step printed. Exits 0 when the story completes, 1 otherwise.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from '../args.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { startControlPlane } from '../../servers/control-plane.js';
import { addDevice, addUser, addVpn, deleteVpn, grant } from '../../servers/admin.js';
import { parseBundle } from '../../device/bundle.js';
import { TerminalAgent } from '../../device/terminal.js';
import { nodePlatform } from '../../runtime/node/platform.js';
import { Tunnels } from '../../runtime/node/tunnel.js';
import { RelayAgent } from '../../device/relay.js';
import { PlaintextAgent, parsePlainConfig } from '../../device/plaintext.js';
import { TcpRelayPorts, connectToPort } from '../../runtime/node/relay-ports.js';

export const demoHelp = `usage: kagi demo

Runs the whole first story of the patent in one process on loopback
ephemeral ports, printing each step: the embedded broker and the auth,
config and key services on a temporary data dir; two terminals get their
config (S101–S104), two users join a VPN (S105–S110: auth, network devices
programmed, keys distributed and acknowledged), and a TCP connection is
carried through the VPN to an echo service. Then a relay (S201–S214) joins
a plaintext terminal that holds no key, forwards a message to it once its
port is FORWARDING, and restricts the port again when the VPN is deleted.
Exits 0 when all of it worked. External terminal and monitoring stories
join the demo as they land.`;

export async function demo(args: string[]): Promise<number> {
  parse(args, {}, 0);
  const step = (s: string) => console.log(`• ${s}`);
  const c = nodeCrypto();
  const dir = mkdtempSync(join(tmpdir(), 'kagi-demo-'));
  const echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const echoPort = (echo.address() as AddressInfo).port;
  const cp = await startControlPlane({ dataDir: dir, crypto: c, port: 0 });
  const stops: (() => Promise<void>)[] = [];
  try {
    step(`control plane up: embedded broker ${cp.brokerUrl}, auth, config and key services, store ${dir}`);
    await addVpn(cp.store, { id: 'plant', protocol: 'tcp', port: echoPort });
    step(`VPN 'plant' carries tcp/${echoPort} (an echo service beside terminal B)`);
    for (const u of ['alice', 'bob']) {
      await addUser(cp.store, u, `${u}-password`);
      await grant(cp.store, 'plant', u);
    }
    step(`users alice and bob may join 'plant'`);
    let tunA: Tunnels | undefined, tunB: Tunnels | undefined;
    const mk = async (id: string, mac: string, onData: (v: string, f: string, p: Uint8Array) => void) => {
      const b = parseBundle(await addDevice(cp.store, cp.keys, c, { id, mac, kind: 'terminal', broker: cp.brokerUrl }));
      const a = new TerminalAgent(b, nodePlatform({ brokerUrl: cp.brokerUrl }), { onData });
      stops.push(() => a.stop());
      await a.start();
      return a;
    };
    const a = await mk('term-a', '02:00:00:00:00:0a', (v, f, p) => tunA?.onData(v, f, p));
    const b = await mk('term-b', '02:00:00:00:00:0b', (v, f, p) => tunB?.onData(v, f, p));
    step('terminals term-a and term-b connected (CONNECT password checked by the broker)');
    await a.configure();
    await b.configure();
    step('S101–S104: both sent MAC + device credential; the auth server verified them; the config server sent their config');
    const va = await a.join('alice', 'alice-password');
    await b.join('bob', 'bob-password');
    step(`S105–S110: alice on term-a and bob on term-b joined ${va.map((v) => `${v.id} (epoch ${v.epoch})`).join(', ')}; password sealed to the auth server, network devices programmed, keys sealed to each terminal and acknowledged`);
    step(`network devices now admit: ${JSON.stringify(cp.acl.snapshot())}`);
    tunA = Tunnels.forAgent(a, [{ vpn: 'plant', localPort: 0, peer: 'term-b' }], []);
    tunB = Tunnels.forAgent(b, [], []);
    stops.unshift(() => tunA!.stop(), () => tunB!.stop());
    const [port] = await tunA.start();
    await tunB.start();
    const text = 'hello through the VPN';
    const back = await new Promise<string>((resolve, reject) => {
      const s = createConnection({ host: '127.0.0.1', port: port! }, () => s.end(text));
      let got = '';
      s.on('data', (d) => (got += d.toString()));
      s.on('end', () => resolve(got));
      s.on('error', reject);
      setTimeout(() => reject(new Error('tunnel timed out')), 10_000).unref();
    });
    step(`4d: TCP on 127.0.0.1:${port} → sealed frames → term-b → echo → back: "${back}"`);
    if (back !== text) throw new Error('echo mismatch');
    step('embodiment 1 complete');

    // Embodiment 2: a relay encrypts for a plaintext terminal behind it.
    const relayBundle = parseBundle(await addDevice(cp.store, cp.keys, c, { id: 'relay-1', mac: '02:00:00:00:00:b1', kind: 'relay', broker: cp.brokerUrl }));
    const relay = new RelayAgent(relayBundle, ['p1'], nodePlatform({ brokerUrl: cp.brokerUrl }), {
      onPortState: (port, state, terminal) => step(`relay-1 port ${port}: ${state}${terminal ? ` (${terminal})` : ''}`),
    });
    const relayPorts = new TcpRelayPorts(relay, [{ name: 'p1', kind: 'tcp', host: '127.0.0.1', port: 0 }]);
    stops.unshift(() => relayPorts.stop(), () => relay.stop());
    await relay.start();
    const { p1 } = await relayPorts.start();
    step(`S201: relay-1 configured itself; its port p1 listens on 127.0.0.1:${p1}, RESTRICTED`);
    const plainCfg = parsePlainConfig(await addDevice(cp.store, cp.keys, c, { id: 'plc-1', mac: '02:00:00:00:00:c1', kind: 'plaintext', broker: cp.brokerUrl, relay: 'relay-1', port: 'p1' }));
    const sock = await connectToPort('127.0.0.1', p1!);
    stops.unshift(async () => void sock.destroy());
    const heard = new Promise<string>((resolve) => {
      const plc = new PlaintextAgent(plainCfg, { write: (b) => void sock.write(b) }, { onData: (_v, peer, b) => resolve(`${peer}: ${new TextDecoder().decode(b)}`) });
      sock.on('data', (d: Buffer) => plc.input(new Uint8Array(d)));
      void (async () => {
        await plc.configure();
        step('S202–S204: plc-1 (no key of its own) sent its config request through port p1; the relay sealed it on its behalf');
        await plc.join('bob', 'bob-password');
        step('S205–S212: bob joined on plc-1 through the relay; the key went to relay-1 for port p1');
        await a.send('plant', 'plc-1', new TextEncoder().encode('hello plc'));
      })();
    });
    step(`plc-1 received, decrypted by its relay: "${await heard}"`);
    await deleteVpn(cp.store, 'plant');
    step("kagi vpn delete plant: the config server tells the relay (S405)");
    const deadline = Date.now() + 3000;
    while (relay.status()[0]!.state !== 'RESTRICTED' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (relay.status()[0]!.state !== 'RESTRICTED') throw new Error('port did not return to RESTRICTED');
    step('done: embodiments 1 and 2 complete');
    return 0;
  } finally {
    for (const s of stops) await s().catch(() => {});
    await cp.close();
    echo.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
