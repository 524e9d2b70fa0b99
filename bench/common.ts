/** What the benchmarks share: a bare-MQTT floor broker and a seeded control plane. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import type mqtt from 'mqtt';
import { nodeCrypto } from '../runtime/node/crypto.js';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../servers/control-plane.js';
import { addUser, addVpn, grant } from '../servers/admin.js';

/** Plain aedes on an ephemeral port: the floor the kagi figures are divided by. */
export async function floorBroker(): Promise<{ url: string; close(): Promise<void> }> {
  const aedes = await Aedes.createBroker();
  const server = createServer((sock) => (sock.setNoDelay(true), aedes.handle(sock)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await new Promise<void>((r) => aedes.close(() => r()));
      server.close();
    },
  };
}

/** Same socket option as kagi's own links, so the floor is comparable. */
export function noDelay(c: mqtt.MqttClient): mqtt.MqttClient {
  (c.stream as unknown as { setNoDelay(v: boolean): void }).setNoDelay(true);
  return c;
}

/** A control plane in a temp dir with VPN 'plant' and user 'bench' granted to it. */
export async function benchControlPlane(o: Pick<ControlPlaneOptions, 'password'> = {}): Promise<{ cp: ControlPlane; crypto: ReturnType<typeof nodeCrypto>; close(): Promise<void> }> {
  const crypto = nodeCrypto();
  const dir = mkdtempSync(join(tmpdir(), 'kagi-bench-'));
  const cp = await startControlPlane({ dataDir: dir, crypto, port: 0, timeoutMs: 60_000, ...o });
  await addVpn(cp.store, { id: 'plant', protocol: 'tcp', port: 5020 });
  await addUser(cp.store, 'bench', 'bench-password');
  await grant(cp.store, 'plant', 'bench');
  return {
    cp,
    crypto,
    close: async () => {
      await cp.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
