/**
 * Binding a listener, with an error that names the address: the agent's
 * listeners (--listen, a relay's ports) are bound before it joins anything,
 * and a port in use is the commonest first-day failure, so the CLI words the
 * fix (which flag moves the port) around this error.
 */
import type { Server } from 'node:net';

export class BindError extends Error {
  override readonly name = 'BindError';
  constructor(readonly host: string, readonly port: number, readonly code: string | undefined, why: string) {
    super(`${host}:${port} ${code === 'EADDRINUSE' ? 'is already in use' : `cannot be bound (${why})`}`);
  }
}

/** Listen on host:port; resolves with the bound port, rejects with a BindError. */
export function listenOn(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const failed = (e: NodeJS.ErrnoException) => reject(new BindError(host, port, e.code, e.message));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      resolve((server.address() as { port: number }).port);
    });
  });
}
