/** Plain aedes (no kagi) on a free loopback port, for tests of one broker mechanism over real sockets. */
import { createServer, type AddressInfo } from 'node:net';
import { Aedes } from 'aedes';

/**
 * A fresh aedes listening on 127.0.0.1 (port 0), closed with its listener
 * at teardown. Hooks and wrappers go on the instance before a client can
 * connect: set them on the returned `aedes` before connecting one.
 */
export async function plainAedes(t: { teardown(fn: () => unknown): void }): Promise<{ aedes: Aedes; url: string }> {
  const aedes = await Aedes.createBroker();
  const server = createServer((s) => aedes.handle(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(async () => {
    await new Promise<void>((r) => aedes.close(() => r()));
    server.close();
  });
  return { aedes, url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
