/** A relay with TCP ports and plaintext terminals behind it, on the real control plane. */
import type { Test } from 'tap';
import type { Socket } from 'node:net';
import { crypto, device, testPlatform } from './control-plane.js';
import { addDevice } from '../../servers/admin.js';
import { RelayAgent } from '../../device/relay.js';
import { PlaintextAgent, parsePlainConfig } from '../../device/plaintext.js';
import { TcpRelayPorts, connectToPort } from '../../runtime/node/relay-ports.js';
import type { ControlPlane } from '../../servers/control-plane.js';

const dec = new TextDecoder();

export async function startRelay(t: Test, cp: ControlPlane, id: string) {
  const b = await device(cp, id, 'relay');
  const relay = new RelayAgent(b, ['p1', 'p2'], testPlatform(cp.brokerUrl), { timeoutMs: 3000, attempts: 2 });
  const ports = new TcpRelayPorts(relay, ['p1', 'p2'].map((name) => ({ name, kind: 'tcp' as const, host: '127.0.0.1', port: 0 })));
  t.teardown(async () => {
    await ports.stop();
    await relay.stop();
  });
  await relay.start();
  return { relay, bound: await ports.start() };
}

let mac = 0x40;
export async function register(cp: ControlPlane, id: string, relay: string, port: string) {
  return parsePlainConfig(await addDevice(cp.store, cp.keys, crypto, { id, mac: `02:00:00:00:01:${(mac++).toString(16)}`, kind: 'plaintext', broker: cp.brokerUrl, relay, port }));
}

export async function plain(t: Test, cp: ControlPlane, id: string, relay: string, port: string, bound: number) {
  return connect(t, await register(cp, id, relay, port), bound);
}

export async function connect(t: Test, cfg: ReturnType<typeof parsePlainConfig>, bound: number) {
  const sock: Socket = await connectToPort('127.0.0.1', bound);
  t.teardown(() => sock.destroy());
  const got: string[] = [];
  const restricted: string[] = [];
  const waiting: string[] = [];
  const p = new PlaintextAgent(cfg, { write: (b) => void sock.write(b) }, {
    timeoutMs: 8000,
    onWaiting: (s, reason) => waiting.push(`${s}: ${reason}`),
    onData: (vpn, peer, b) => got.push(`${vpn}:${peer}:${dec.decode(b)}`),
    onRestricted: (vpn) => restricted.push(vpn),
  });
  sock.on('data', (d: Buffer) => p.input(new Uint8Array(d)));
  return { p, sock, got, restricted, waiting };
}
