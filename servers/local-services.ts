/**
 * Services run in one process answer each other's service requests by a
 * call (decision 107). Over the broker a `service.request` is an HPKE
 * auth-mode seal and open each way and two MQTT hops: it protects the
 * request from the broker and anyone on the path to it. Between services
 * in the same process there is no such path, and all their private keys
 * are in this process's memory already, so the seal protected nothing; it
 * cost a join three of its seven HPKE operations and three of its round
 * trips through the broker.
 *
 * What does not change: the auth server still opens the device's sealed
 * request itself (the config server hands it the envelope unopened, as it
 * forwards it over the broker), so the config server's code never sees a
 * password or a ticket secret; a service that runs in another process is
 * asked over the broker, sealed, as before.
 */
import { asBody, type Body } from '../protocol/body.js';
import type { Service } from '../protocol/topics.js';

/**
 * A service's answer to a `service.request` body from `from`; undefined =
 * not taken (as over the broker: no reply). `aside`: called (at most once)
 * when the answer starts waiting on something that is not this process's
 * work, a password hash on the pool's threads, so the asker can give its
 * admission place to the next request (decision 128). Over the broker
 * there is none.
 */
export type ServiceDoor = (from: Service, body: Body, aside?: () => void) => Promise<Body | undefined>;

/**
 * A copy of a body as the wire would give it: fresh byte arrays, so
 * neither side can change (or wipe) what the other holds. Bodies are CBOR
 * data: arrays, plain objects, byte strings and scalars.
 */
export function copyBody<T>(v: T): T {
  if (v instanceof Uint8Array) return v.slice() as T;
  if (Array.isArray(v)) return v.map(copyBody) as T;
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = copyBody(x);
    return out as T;
  }
  return v;
}

export class LocalServices {
  private readonly doors = new Map<Service, ServiceDoor>();

  /** `name` answers in this process from now on; the returned function closes its door. */
  open(name: Service, door: ServiceDoor): () => void {
    this.doors.set(name, door);
    return () => {
      if (this.doors.get(name) === door) this.doors.delete(name);
    };
  }

  has(name: Service): boolean {
    return this.doors.has(name);
  }

  /** `from` asks `to` in this process; what a remote service would answer, or an error like a request that got no reply. */
  async ask(from: Service, to: Service, body: Body, aside?: () => void): Promise<Body> {
    const door = this.doors.get(to);
    if (!door) throw new Error(`${to} does not run in this process`);
    const answer = await door(from, copyBody(body), aside);
    if (answer === undefined) throw new Error(`${to} did not take a service request from ${from}`);
    return asBody(copyBody(answer));
  }
}
