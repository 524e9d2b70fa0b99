/**
 * One agent per device file. Two `kagi agent FILE` at once (a second start
 * by hand, a service manager's restart racing the old process) are one
 * device twice: they replace each other's config channel at every config
 * request, their CONNECT counters meet the broker's replay window, their
 * ticket rotations retire each other's tickets (a theft signal that revokes
 * the family), and their writes of FILE.state cross. So the second is
 * refused at start, naming the first, before it touches any of that.
 *
 * FILE.lock is the operating system's lock (runtime/node/process-lock.ts),
 * gone with the process however it ends; FILE.lock.json names the holder.
 */
import { resolve } from 'node:path';
import { holderText, lockHolder, takeLock, type ProcessLock } from '../runtime/node/process-lock.js';

/** Another agent runs on this device file. */
export class DeviceFileLockedError extends Error {
  override readonly name = 'DeviceFileLockedError';
}

/** Hold `file` for this process; throws DeviceFileLockedError naming the agent that holds it. */
export function lockDeviceFile(file: string): ProcessLock {
  const note = `${file}.lock.json`;
  const lock = takeLock(`${file}.lock`, note);
  if (lock) return lock;
  throw new DeviceFileLockedError(
    `${resolve(file)} is already run by the agent of ${holderText(lockHolder(note))}: ` +
      'two agents on one device file would take each other\'s channels, counters and tickets. Stop that agent first.',
  );
}
