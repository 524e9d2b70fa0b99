/**
 * Mosquitto dynamic security driver: an external Mosquitto enforces the same
 * topic ACL as kagi's embedded broker. Per VPN one role `kagi-vpn-{id}`
 * allowing publish to `kagi/v1/vpn/{id}/#` and subscribe to
 * `kagi/v1/vpn/{id}/all`, and per member a role `kagi-member-{id}-{device}`
 * allowing subscribe to `kagi/v1/vpn/{id}/{device}` (dynsec 2.0.11 does not
 * expand %c in ACLs). A member's client holds both, nobody else does.
 * Dynsec disconnects a client whose roles change, so new ACLs apply at once;
 * agents reconnect by themselves. Commands go to `$CONTROL/dynamic-security/v1`
 * as the admin user; every apply reads the clients' roles and adds or
 * removes only the difference, so it is idempotent.
 *
 * A revoked device's login is disabled (dynsec's disableClient, which also
 * drops its connection) at every apply, so a revoke made while kagi up was
 * down is enforced at the first reconcile after start; Mosquitto then
 * refuses its CONNECT, as the embedded broker does.
 */
import { DEVICE_OPS, SERVICES, topics } from '../protocol/topics.js';
import mqtt, { type MqttClient } from 'mqtt';
import type { Duplex } from 'node:stream';
import type { DesiredState, NetworkDriver } from './driver.js';

/** Mosquitto's count of messages it dropped since it started (retained, every sys_interval): services may read it (servers/broker-drops.ts). */
export const BROKER_DROPPED_TOPIC = '$SYS/broker/publish/messages/dropped';

const CONTROL = '$CONTROL/dynamic-security/v1';

export interface DynsecOptions {
  url: string;
  username: string;
  password: string;
  /**
   * The connection to an mqtts:// broker, checked as the services check it
   * (its pin or CA: runtime/node/broker-tls.ts), so the admin password
   * never goes to a broker that is not the one named. Default: MQTT.js's own.
   */
  stream?: () => Duplex;
}

type Command = Record<string, unknown> & { command: string };
type Response = { command: string; error?: string; data?: Record<string, unknown>; correlationData?: string };

export const vpnRole = (vpnId: string) => `kagi-vpn-${vpnId}`;
export const memberRole = (vpnId: string, deviceId: string) => `kagi-member-${vpnId}-${deviceId}`;
const OURS = /^kagi-(vpn|member)-/;

export class MosquittoDynsecDriver implements NetworkDriver {
  readonly name = 'mosquitto-dynsec';
  private client: MqttClient | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  /** The batch waiting for its responses (one at a time: send() queues them). */
  private waiting: { batch: string; resolve(r: Response[]): void; reject(e: Error): void } | null = null;
  private batches = 0;
  /**
   * Our MQTT client id: unique per driver, not per process. Two drivers
   * with one id (a test's admin beside kagi up's, two control planes in a
   * process) take the session from each other at every reconnect, and
   * commands published in between are lost.
   */
  private readonly clientId = `kagi-dynsec-${process.pid}-${Math.random().toString(16).slice(2, 10)}`;

  constructor(private readonly o: DynsecOptions) {}

  private async connect(): Promise<MqttClient> {
    if (this.client) return this.client;
    const options = { username: this.o.username, password: this.o.password, clientId: this.clientId, reconnectPeriod: 1000 };
    const c = this.o.stream ? await firstConnect(new mqtt.MqttClient(this.o.stream, options)) : await mqtt.connectAsync(this.o.url, options);
    await c.subscribeAsync(`${CONTROL}/response`, { qos: 1 });
    c.on('message', (_t, p) => this.onResponses(p));
    this.client = c;
    return c;
  }

  /**
   * Responses are matched to their batch by the correlationData every
   * command carries (our client id, the batch's number, the command's
   * index). Mosquitto publishes every admin's responses to every
   * subscriber of the response topic: another admin's (mosquitto_ctrl,
   * another driver) or one that comes after its batch gave up resolves
   * nothing.
   */
  private onResponses(payload: Buffer): void {
    let responses: Response[];
    try {
      responses = (JSON.parse(payload.toString()) as { responses?: Response[] }).responses ?? [];
    } catch {
      return;
    }
    const w = this.waiting;
    if (!w || !responses.length || !responses.every((r) => r.correlationData?.startsWith(`${w.batch}:`))) return;
    this.waiting = null;
    w.resolve(responses);
  }

  /** Send commands, one batch at a time, and return Mosquitto's responses (in the commands' order). */
  send(commands: Command[]): Promise<Response[]> {
    const run = this.queue.then(async () => {
      const c = await this.connect();
      const batch = `${this.clientId}/${++this.batches}`;
      const answer = new Promise<Response[]>((resolve, reject) => {
        const timer = setTimeout(() => this.giveUp(new Error('mosquitto-dynsec: no response from $CONTROL (is the plugin loaded, is the admin allowed?)')), 5000);
        this.waiting = { batch, resolve: (r) => (clearTimeout(timer), resolve(r)), reject: (e) => (clearTimeout(timer), reject(e)) };
      });
      const tagged = commands.map((cmd, i) => ({ ...cmd, correlationData: `${batch}:${i}` }));
      // A publish that fails ends the batch with its error (never a second, unheard rejection).
      await c.publishAsync(CONTROL, JSON.stringify({ commands: tagged }), { qos: 1 }).catch((e: Error) => this.giveUp(e));
      return answer;
    });
    this.queue = run.catch(() => {});
    return run;
  }

  private async must(commands: Command[], tolerate: RegExp = /^$/): Promise<Response[]> {
    const rs = await this.send(commands);
    for (const r of rs) if (r.error && !tolerate.test(r.error)) throw new Error(`mosquitto-dynsec: ${r.command}: ${r.error}`);
    return rs;
  }

  /** Refuse to start rather than run open: the admin must be able to list. */
  async check(): Promise<void> {
    try {
      await this.must([{ command: 'listRoles' }]);
    } catch (e) {
      const m = (e as Error).message;
      throw new Error(m.startsWith('mosquitto-dynsec:') ? m : `mosquitto-dynsec: cannot reach ${this.o.url} as ${this.o.username}: ${m}`);
    }
  }

  /** A login on this broker (created once; the password is re-set). */
  async ensureClient(username: string, password: string, roles: string[] = []): Promise<void> {
    await this.must([{ command: 'createClient', username, password }], /already exists/i);
    await this.must([{ command: 'setClientPassword', username, password }]);
    if (!roles.length) return;
    // Only the roles it lacks: Mosquitto answers "Internal error" to adding
    // a role a client already holds (a restart of kagi up would fail on it).
    const [got] = await this.must([{ command: 'getClient', username }]);
    const has = new Set(((got!.data as { client?: { roles?: { rolename: string }[] } } | undefined)?.client?.roles ?? []).map((r) => r.rolename));
    const missing = roles.filter((r) => !has.has(r));
    if (missing.length) await this.must(missing.map((rolename) => ({ command: 'addClientRole', username, rolename })), /already/i);
  }

  /**
   * A kagi service (the whole tree) or a device (the service ops it uses,
   * its own inbox and state topic: the topics the embedded broker allows a
   * device; retain, sizes and quotas are not dynsec's, docs/decisions.md 105).
   */
  async ensureAccount(username: string, password: string, kind: 'service' | 'device'): Promise<void> {
    const rolename = kind === 'service' ? 'kagi-service' : `kagi-device-${username}`;
    const ops = SERVICES.flatMap((svc) => DEVICE_OPS[svc].map((op): [string, string] => ['publishClientSend', topics.service(svc, op)]));
    await this.role(
      rolename,
      kind === 'service'
        ? [['publishClientSend', 'kagi/#'], ['subscribePattern', 'kagi/#'], ['subscribeLiteral', BROKER_DROPPED_TOPIC]]
        : [...ops, ['publishClientSend', `kagi/v1/dev/${username}/state`], ['subscribePattern', `kagi/v1/dev/${username}/in`]],
    );
    // Roles made before issue 23 allowed the whole service tree.
    if (kind === 'device') await this.must([{ command: 'removeRoleACL', rolename, acltype: 'publishClientSend', topic: 'kagi/v1/svc/#' }], /not found/i);
    await this.ensureClient(username, password, [rolename]);
  }

  /** Create a role with its ACLs (both idempotent). */
  private async role(rolename: string, acls: [string, string][]): Promise<void> {
    await this.must([{ command: 'createRole', rolename }], /already exists/i);
    await this.must(acls.map(([acltype, topic]) => ({ command: 'addRoleACL', rolename, acltype, topic, allow: true })), /already exists/i);
  }

  /** VPN → whether its role's publish ACL currently denies (cut by the bandwidth plan). */
  private readonly cutNow = new Map<string, boolean>();

  /**
   * A cut VPN's role denies publishing its frames (Mosquitto drops them and
   * keeps the client connected); restored, it allows them again.
   */
  private async cut(vpnId: string, cut: boolean): Promise<void> {
    if (this.cutNow.get(vpnId) === cut || (!this.cutNow.has(vpnId) && !cut)) return void this.cutNow.set(vpnId, cut);
    const rolename = vpnRole(vpnId);
    const topic = `kagi/v1/vpn/${vpnId}/#`;
    await this.must([{ command: 'removeRoleACL', rolename, acltype: 'publishClientSend', topic }], /not found/i);
    await this.must([{ command: 'addRoleACL', rolename, acltype: 'publishClientSend', topic, allow: !cut }]);
    this.cutNow.set(vpnId, cut);
  }

  async apply(state: DesiredState): Promise<void> {
    const want = new Map<string, Set<string>>(); // client → kagi roles it should hold
    const give = (client: string, role: string) => want.set(client, (want.get(client) ?? new Set()).add(role));
    for (const v of state.vpns) {
      await this.role(vpnRole(v.id), [['publishClientSend', `kagi/v1/vpn/${v.id}/#`], ['subscribePattern', `kagi/v1/vpn/${v.id}/all`]]);
      await this.cut(v.id, v.cut);
      for (const m of v.members) {
        const who = m.via ?? m.deviceId; // a relay carries its plaintext terminals
        await this.role(memberRole(v.id, m.deviceId), [['subscribePattern', `kagi/v1/vpn/${v.id}/${m.deviceId}`]]);
        give(who, vpnRole(v.id));
        give(who, memberRole(v.id, m.deviceId));
      }
    }
    const [list] = await this.must([{ command: 'listClients', verbose: true }]);
    const clients = ((list!.data?.clients ?? []) as { username: string; disabled?: boolean; roles?: { rolename: string }[] }[]);
    const revoked = new Set(state.revoked ?? []);
    const changes: Command[] = [];
    for (const c of clients) {
      if (revoked.has(c.username) && c.disabled !== true) changes.push({ command: 'disableClient', username: c.username });
      const has = new Set((c.roles ?? []).map((r) => r.rolename).filter((r) => OURS.test(r)));
      const should = want.get(c.username) ?? new Set<string>();
      for (const r of should) if (!has.has(r)) changes.push({ command: 'addClientRole', username: c.username, rolename: r });
      for (const r of has) if (!should.has(r)) changes.push({ command: 'removeClientRole', username: c.username, rolename: r });
    }
    if (changes.length) await this.must(changes);
  }

  private giveUp(e: Error): void {
    const w = this.waiting;
    this.waiting = null;
    w?.reject(e);
  }

  async close(): Promise<void> {
    this.giveUp(new Error('mosquitto-dynsec: closed'));
    await this.client?.endAsync();
    this.client = null;
  }
}

/** The client's first CONNACK, or its first error (and then no more tries). */
function firstConnect(c: MqttClient): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    c.once('connect', () => (c.off('error', fail), resolve(c)));
    const fail = (e: Error) => (c.end(true), reject(e));
    c.once('error', fail);
  });
}
