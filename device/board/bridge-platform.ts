/**
 * The device Platform over a host bridge: portable crypto fed by the
 * board's RNG, the board's clock, counters in its key-value storage, and
 * MQTT through the host (bridge-link.ts).
 */
import type { Platform, SecretStore } from '../platform.js';
import { fromHex, toHex } from '../../protocol/bytes.js';
import { MemorySecretStore } from '../tickets.js';
import type { NumberStore } from '../../protocol/store.js';
import { MemoryNumberStore } from '../../protocol/store.js';
import { portableCrypto } from '../../protocol/crypto/portable.js';
import { BridgeLink } from './bridge-link.js';
import type { HostBridge } from './host.js';
import { healthyRandom } from '../../protocol/entropy.js';

/** Counters in the host's key-value storage, one entry per key ("n:" prefix). */
export class HostNumberStore implements NumberStore {
  constructor(private readonly host: HostBridge) {}

  async get(key: string): Promise<number | undefined> {
    const v = this.host.storageGet(`n:${key}`);
    return v === undefined ? undefined : Number(v);
  }

  async set(key: string, value: number): Promise<void> {
    this.host.storagePut(`n:${key}`, String(value));
  }
}

/**
 * Tickets in the host's key-value storage ("s:" prefix, hex). The bridge
 * has no delete: an empty value is none.
 */
export class HostSecretStore implements SecretStore {
  constructor(private readonly host: HostBridge) {}

  async get(key: string): Promise<Uint8Array | undefined> {
    const v = this.host.storageGet(`s:${key}`);
    return v ? fromHex(v) : undefined;
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    this.host.storagePut(`s:${key}`, toHex(value));
  }

  async delete(key: string): Promise<void> {
    this.host.storagePut(`s:${key}`, '');
  }
}

export interface BridgePlatformOptions {
  /** key-value: counters survive reboots (required for real use); none: memory (tests, demos). */
  storage: 'key-value' | 'none';
  brokerAuth?: 'counter' | 'static' | 'none';
}

/** Throws (the agent does not start) when the board's RNG fails protocol/entropy.ts's checks. */
export function bridgePlatform(host: HostBridge, o: BridgePlatformOptions): Platform {
  const rng = healthyRandom((n) => host.random(n));
  const crypto = portableCrypto((buf) => buf.set(rng(buf.length)));
  const numbers: NumberStore = o.storage === 'key-value' ? new HostNumberStore(host) : new MemoryNumberStore();
  // Jitter needs no secrecy, but boards' Math.random can be poor: use the RNG.
  const random = () => {
    const b = rng(4);
    return (((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]!) / 2 ** 32;
  };
  return {
    crypto,
    now: () => host.now(),
    wallClock: false, // the bridge promises differences only: the time comes from the control plane
    numbers,
    secrets: o.storage === 'key-value' ? new HostSecretStore(host) : new MemorySecretStore(),
    log: (level, msg) => host.log(level, msg),
    async connect(l) {
      const link = new BridgeLink({ ...l, host, crypto, numbers, brokerAuth: o.brokerAuth ?? 'counter', random });
      await link.connect();
      return link;
    },
  };
}
