/**
 * The MQTT CONNECT password (DESIGN §5): a MAC over (client id, counter,
 * era) under a key both sides derive from X25519(device key, broker key).
 * The broker keeps a counter window per client and era (replay.ts), so a
 * captured password never connects twice within its era's window, and a
 * client that lost its counters (storage `none`) connects at once in a new
 * era instead of being locked out.
 *
 *   key      = HKDF(X25519(sk, pk'), salt = "", info = "kagi/v1 connect")
 *   password = counter (uint32 BE) || era (uint32 BE)
 *              || HMAC-SHA256(key, label || id || counter || era)[0..16)
 */
import type { Crypto } from './crypto/backend.js';
import { KagiError } from './errors.js';
import { concat, equalCT, i2osp, utf8, wipe } from './bytes.js';
import { LIMITS } from './limits.js';
import { SendCounter } from './replay.js';
import type { NumberStore } from './store.js';

const LABEL = utf8('kagi/v1 connect');
export const CONNECT_PASSWORD_LENGTH = 24;

export function connectKey(c: Crypto, mySecret: Uint8Array, theirPublic: Uint8Array): Uint8Array {
  const dh = c.staticDh(mySecret, theirPublic);
  const k = c.hkdf(dh, new Uint8Array(0), LABEL, 32);
  wipe(dh);
  return k;
}

function tag(c: Crypto, key: Uint8Array, clientId: string, counterAndEra: Uint8Array): Uint8Array {
  return c.hmacSha256(key, concat(LABEL, utf8(clientId), counterAndEra)).subarray(0, 16);
}

function uint32At(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) >>> 0) + (b[i + 1]! << 16) + (b[i + 2]! << 8) + b[i + 3]!;
}

export function connectPassword(c: Crypto, key: Uint8Array, clientId: string, counter: number, era: number): Uint8Array {
  if (!Number.isInteger(counter) || counter < 1 || counter > LIMITS.maxSeq) throw new KagiError('argument', 'connect counter out of range');
  if (!Number.isInteger(era) || era < 0 || era > LIMITS.maxSeq) throw new KagiError('argument', 'connect era out of range');
  const ce = concat(i2osp(counter, 4), i2osp(era, 4));
  return concat(ce, tag(c, key, clientId, ce));
}

/** Verify a password; returns its counter and era (the caller checks freshness). */
export function verifyConnectPassword(c: Crypto, key: Uint8Array, clientId: string, password: Uint8Array): { counter: number; era: number } {
  if (password.length !== CONNECT_PASSWORD_LENGTH) throw new KagiError('field', 'connect password has the wrong length');
  const ce = password.subarray(0, 8);
  if (!equalCT(tag(c, key, clientId, ce), password.subarray(8))) throw new KagiError('auth', 'connect password does not verify');
  return { counter: uint32At(ce, 0), era: uint32At(ce, 4) };
}

const STATIC_LABEL = utf8('kagi/v1 static');

/**
 * A fixed password for brokers that check plain username/password (an
 * external Mosquitto with dynamic security): both sides derive it from the
 * same key, so it is never stored or sent anywhere but the CONNECT. It
 * cannot have a counter, so a captured one replays: use TLS to such brokers.
 */
export function staticPassword(c: Crypto, key: Uint8Array, clientId: string): string {
  const mac = c.hmacSha256(key, concat(STATIC_LABEL, utf8(clientId)));
  let s = '';
  for (const b of mac.subarray(0, 24)) s += b.toString(16).padStart(2, '0');
  return s;
}

/**
 * The CONNECT username and password a client sends, the same for every
 * link implementation (MQTT.js on Node, a board's host MQTT):
 *  - counter: username "kagi", a password with a fresh counter per attempt
 *    (kagi's embedded broker refuses a counter it has seen);
 *  - static: username = client id, a fixed password derived from the same
 *    key (Mosquitto dynamic security);
 *  - no broker key: neither (an external broker without kagi auth).
 */
export class ConnectCredentials {
  private readonly key: Uint8Array | undefined;
  private readonly counter: SendCounter;

  constructor(
    private readonly c: Crypto,
    private readonly clientId: string,
    secretKey: Uint8Array,
    brokerPublicKey: Uint8Array | undefined,
    private readonly mode: 'counter' | 'static',
    numbers: NumberStore,
  ) {
    this.key = brokerPublicKey ? connectKey(c, secretKey, brokerPublicKey) : undefined;
    this.counter = new SendCounter(numbers, 16, `connect:${clientId}:`, (n) => c.randomBytes(n));
  }

  get username(): string | undefined {
    return this.key ? (this.mode === 'static' ? this.clientId : 'kagi') : undefined;
  }

  /** The password for the next connection attempt (takes a counter in counter mode). */
  async password(): Promise<Uint8Array | undefined> {
    if (!this.key) return undefined;
    if (this.mode === 'static') return utf8(staticPassword(this.c, this.key, this.clientId));
    const { seq, era } = await this.counter.takeWithEra('broker');
    return connectPassword(this.c, this.key, this.clientId, seq, era);
  }
}

