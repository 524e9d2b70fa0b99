/**
 * The MQTT CONNECT password (DESIGN §5): a MAC over (client id, counter)
 * under a key both sides derive from X25519(device key, broker key). The
 * broker remembers the highest counter per client, so a captured password
 * never connects twice.
 *
 *   key      = HKDF(X25519(sk, pk'), salt = "", info = "kagi/v1 connect")
 *   password = counter (uint32 BE) || HMAC-SHA256(key, label || id || counter)[0..16)
 */
import type { Crypto } from './crypto/backend.js';
import { KagiError } from './errors.js';
import { concat, equalCT, i2osp, utf8, wipe } from './bytes.js';
import { LIMITS } from './limits.js';
import { SendCounter } from './replay.js';
import type { NumberStore } from './store.js';

const LABEL = utf8('kagi/v1 connect');
export const CONNECT_PASSWORD_LENGTH = 20;

export function connectKey(c: Crypto, mySecret: Uint8Array, theirPublic: Uint8Array): Uint8Array {
  const dh = c.dh(mySecret, theirPublic);
  const k = c.hkdf(dh, new Uint8Array(0), LABEL, 32);
  wipe(dh);
  return k;
}

function tag(c: Crypto, key: Uint8Array, clientId: string, counter: Uint8Array): Uint8Array {
  return c.hmacSha256(key, concat(LABEL, utf8(clientId), counter)).subarray(0, 16);
}

export function connectPassword(c: Crypto, key: Uint8Array, clientId: string, counter: number): Uint8Array {
  if (!Number.isInteger(counter) || counter < 1 || counter > LIMITS.maxSeq) throw new KagiError('argument', 'connect counter out of range');
  const ctr = i2osp(counter, 4);
  return concat(ctr, tag(c, key, clientId, ctr));
}

/** Verify a password; returns its counter (the caller checks freshness). */
export function verifyConnectPassword(c: Crypto, key: Uint8Array, clientId: string, password: Uint8Array): number {
  if (password.length !== CONNECT_PASSWORD_LENGTH) throw new KagiError('field', 'connect password has the wrong length');
  const ctr = password.subarray(0, 4);
  if (!equalCT(tag(c, key, clientId, ctr), password.subarray(4))) throw new KagiError('auth', 'connect password does not verify');
  return ((ctr[0]! << 24) >>> 0) + (ctr[1]! << 16) + (ctr[2]! << 8) + ctr[3]!;
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
    this.counter = new SendCounter(numbers, 16, `connect:${clientId}:`);
  }

  get username(): string | undefined {
    return this.key ? (this.mode === 'static' ? this.clientId : 'kagi') : undefined;
  }

  /** The password for the next connection attempt (takes a counter in counter mode). */
  async password(): Promise<Uint8Array | undefined> {
    if (!this.key) return undefined;
    if (this.mode === 'static') return utf8(staticPassword(this.c, this.key, this.clientId));
    return connectPassword(this.c, this.key, this.clientId, await this.counter.take('broker'));
  }
}

