/**
 * What an agent needs from its host, and nothing more, so the same agent
 * code runs on Node and on a board's bridge: crypto, a clock, persistent
 * numbers (sequence counters), an MQTT link and a log.
 */
import type { Crypto } from '../protocol/crypto/backend.js';
import type { NumberStore } from '../protocol/store.js';
import type { Transport } from '../protocol/peer.js';

/**
 * The broker answered CONNECT with a refusal (CONNACK not authorized, bad
 * credentials): this identity is unknown or revoked, and asking again will
 * not change that, so the first connection is not retried. A broker that
 * is down or unreachable is a plain Error, and is retried.
 */
export class BrokerRefusedError extends Error {
  override readonly name = 'BrokerRefusedError';
}

export interface Link extends Transport {
  /** Up now (a CONNACK, and no close since). */
  readonly connected: boolean;
  publish(topic: string, payload: Uint8Array, retain?: boolean): Promise<void>;
  /** One SUBSCRIBE for all of `topics` (a VPN's two topics at a join: one round trip, not two). */
  subscribe(...topics: string[]): Promise<void>;
  close(): Promise<void>;
}

export interface LinkOptions {
  clientId: string;
  secretKey: Uint8Array;
  brokerPublicKey: Uint8Array;
  subscriptions: string[];
  onMessage(topic: string, payload: Uint8Array): void;
  /** Published by the broker when the connection dies (retained). */
  will?: { topic: string; payload: Uint8Array; retain: boolean };
  /** After every (re)connect: the link resubscribes itself. */
  onConnect?(): void;
}

/** Small secrets an agent keeps across restarts (resumption tickets): bytes by key. */
export interface SecretStore {
  get(key: string): Promise<Uint8Array | undefined>;
  set(key: string, value: Uint8Array): Promise<void>;
  delete(key: string): Promise<void>;
}

export interface Platform {
  crypto: Crypto;
  now(): number;
  /**
   * Whether now() is the time of day (Unix ms; Node) or only counts (a
   * board's host before anyone told it the time). Default yes. Without it
   * the agent learns the time from the control plane's first answer.
   */
  wallClock?: boolean;
  numbers: NumberStore;
  /** Where tickets persist; memory when absent (they are lost at a restart, and the password is needed again). */
  secrets?: SecretStore;
  /** One connection attempt: resolves on CONNACK, rejects if it fails (the agent retries). */
  connect(o: LinkOptions): Promise<Link>;
  log(level: 'debug' | 'info' | 'warn', msg: string): void;
  /** The broker, as an operator would name it in logs (a URL on Node). */
  broker?: string;
  /** What to check when the control plane does not answer (the host's own words, e.g. its flags). */
  brokerHint?: string;
}
