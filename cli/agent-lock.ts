/**
 * One agent per device file. Two `kagi agent FILE` at once (a second start
 * by hand, a service manager's restart racing the old process) are one
 * device twice: they replace each other's config channel at every config
 * request, their CONNECT counters meet the broker's replay window, their
 * ticket rotations retire each other's tickets (a theft signal that revokes
 * the family), and their writes of FILE.state cross. So the second is
 * refused at start, naming the first, before it touches any of that.
 *
 * The lock is a listening Unix socket named after the file's real path:
 * on Linux in the abstract namespace, which the kernel frees with the
 * process however it ends (kill -9 leaves nothing behind, and no pid file
 * can be mistaken for a live one after its pid is reused); elsewhere a
 * socket file in the temp dir, found stale when nothing answers on it.
 * Pure Node, so it goes into a Node board bundle too (an SQLite lock, as
 * the data dir uses, would need a native module there). The holder
 * answers whoever connects with a note saying who it is, for the refusal.
 * Abstract sockets are per network namespace: two agents on one file in
 * two namespaces are not seen (a miss, never a false refusal).
 */
import { createConnection, createServer, type Server } from 'node:net';
import { createHash } from 'node:crypto';
import { realpathSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Another agent runs on this device file. */
export class DeviceFileLockedError extends Error {
  override readonly name = 'DeviceFileLockedError';
}

export interface DeviceFileLock {
  release(): Promise<void>;
}

interface Holder {
  pid: number;
  host: string;
  since: string;
}

/** The lock's socket address for `file` (by its real path: a symlink or another spelling is the same file). */
export function lockAddress(file: string): string {
  const key = createHash('sha256').update(realpathSync(file)).digest('hex').slice(0, 32);
  return process.platform === 'linux' ? `\0kagi-agent-${key}` : join(tmpdir(), `kagi-agent-${key}.sock`);
}

const listen = (server: Server, address: string) =>
  new Promise<NodeJS.ErrnoException | null>((done) => {
    server.once('error', done);
    server.listen(address, () => (server.off('error', done), done(null)));
  });

/** What the holder at `address` says about itself; null when nobody answers (a stale socket file). */
function ask(address: string): Promise<Holder | undefined | null> {
  return new Promise((done) => {
    let text = '';
    const s = createConnection(address);
    s.setTimeout(5_000, () => s.destroy());
    s.on('data', (d) => (text += d));
    s.on('end', () => {
      try {
        const h = JSON.parse(text) as Holder;
        done(typeof h.pid === 'number' ? h : undefined);
      } catch {
        done(undefined);
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? null : undefined));
    s.on('close', () => done(undefined)); // after a timeout: a holder that says nothing (the first settle wins)
  });
}

function holderText(h: Holder | undefined): string {
  return h ? `pid ${h.pid} on ${h.host}, since ${h.since}` : 'another process (it did not say which)';
}

/** Hold `file` for this process; throws DeviceFileLockedError naming the agent that holds it. */
export async function lockDeviceFile(file: string): Promise<DeviceFileLock> {
  const address = lockAddress(file);
  const me: Holder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  const server = createServer((s) => s.end(JSON.stringify(me)));
  server.unref(); // the lock never keeps the process alive by itself
  for (let tries = 0; ; tries++) {
    const e = await listen(server, address);
    if (!e) break;
    if (e.code !== 'EADDRINUSE') throw new Error(`cannot lock ${resolve(file)} (${address.replace('\0', '@')}): ${e.message}`);
    const holder = await ask(address);
    // A socket file nobody answers on: its agent died without removing it (not on Linux).
    if (holder === null && tries === 0 && !address.startsWith('\0')) {
      rmSync(address, { force: true });
      continue;
    }
    throw new DeviceFileLockedError(
      `${resolve(file)} is already run by the agent of ${holderText(holder ?? undefined)}: ` +
        "two agents on one device file would take each other's channels, counters and tickets. Stop that agent first.",
    );
  }
  return { release: () => new Promise<void>((done) => server.close(() => done())) };
}
