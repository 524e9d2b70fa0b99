/**
 * Board profiles (board-profiles/*.json): what one target board or runtime
 * offers the agent, and what its bundle may cost. The schema is this
 * parser: every field checked, every problem an error naming the field.
 */
import { KagiError } from '../protocol/errors.js';

export const RUNTIMES = ['node', 'quickjs', 'xs'] as const;
export const ROLES = ['terminal', 'relay'] as const;
export const STORAGES = ['file', 'key-value', 'none'] as const;
export const MQTT_SOURCES = ['library', 'host'] as const;
export const CRYPTO_BACKENDS = ['node', 'portable'] as const;
export const RANDOM_SOURCES = ['node-crypto', 'host'] as const;
export const PORT_KINDS = ['tcp', 'uart'] as const;

export type Runtime = (typeof RUNTIMES)[number];

export type PortSpec =
  | { name: string; kind: 'tcp'; host: string; port: number }
  | { name: string; kind: 'uart'; device: string; speed: number };

export interface BoardProfile {
  name: string;
  description: string;
  runtime: Runtime;
  role: (typeof ROLES)[number];
  budget: {
    /** Heap the agent may use while joined (bytes). */
    ramBytes: number;
    /** Minified bundle size it must fit (bytes). */
    flashBytes: number;
  };
  ports: PortSpec[];
  storage: (typeof STORAGES)[number];
  mqtt: (typeof MQTT_SOURCES)[number];
  crypto: (typeof CRYPTO_BACKENDS)[number];
  random: (typeof RANDOM_SOURCES)[number];
}

type Obj = Record<string, unknown>;

function fail(where: string, field: string, what: string): never {
  throw new KagiError('profile', `${where}: ${field} ${what}`);
}

function oneOf<T extends string>(v: unknown, where: string, field: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) fail(where, field, `must be one of ${allowed.join(', ')}, not ${JSON.stringify(v)}`);
  return v as T;
}

function positiveInt(v: unknown, where: string, field: string, max?: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || (max !== undefined && v > max)) fail(where, field, `must be a positive integer${max !== undefined ? ` up to ${max}` : ''}, not ${JSON.stringify(v)}`);
  return v;
}

function text(v: unknown, where: string, field: string, pattern: RegExp, shape: string): string {
  if (typeof v !== 'string' || !pattern.test(v)) fail(where, field, `must be ${shape}, not ${JSON.stringify(v)}`);
  return v;
}

function object(v: unknown, where: string, field: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, field, 'must be an object');
  return v as Obj;
}

const KNOWN = new Set(['name', 'description', 'runtime', 'role', 'budget', 'ports', 'storage', 'mqtt', 'crypto', 'random']);

function port(v: unknown, where: string, i: number): PortSpec {
  const f = `ports[${i}]`;
  const p = object(v, where, f);
  const name = text(p.name, where, `${f}.name`, /^[A-Za-z0-9_-]{1,16}$/, 'a port name of 1-16 letters, digits, _ or -');
  const kind = oneOf(p.kind, where, `${f}.kind`, PORT_KINDS);
  if (kind === 'tcp') {
    return { name, kind, host: text(p.host, where, `${f}.host`, /^[A-Za-z0-9.:-]{1,64}$/, 'a host name or address'), port: positiveInt(p.port, where, `${f}.port`, 65535) };
  }
  return { name, kind, device: text(p.device, where, `${f}.device`, /^[A-Za-z0-9/_.-]{1,64}$/, 'a device path such as /dev/ttyS1 or UART1'), speed: positiveInt(p.speed, where, `${f}.speed`, 12_000_000) };
}

/** Check a parsed profile; `where` names it in errors (its file). */
export function parseProfile(json: unknown, where = 'profile'): BoardProfile {
  const o = object(json, where, '(the whole file)');
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) fail(where, k, `is not a profile field (known: ${[...KNOWN].join(', ')})`);
  const name = text(o.name, where, 'name', /^[a-z0-9][a-z0-9-]{0,47}$/, 'lower-case letters, digits and -');
  const description = typeof o.description === 'string' ? o.description : fail(where, 'description', 'must be a string');
  const runtime = oneOf(o.runtime, where, 'runtime', RUNTIMES);
  const role = oneOf(o.role, where, 'role', ROLES);
  const b = object(o.budget, where, 'budget');
  const budget = { ramBytes: positiveInt(b.ramBytes, where, 'budget.ramBytes'), flashBytes: positiveInt(b.flashBytes, where, 'budget.flashBytes') };
  if (!Array.isArray(o.ports)) fail(where, 'ports', 'must be a list (empty for a terminal)');
  const ports = (o.ports as unknown[]).map((p, i) => port(p, where, i));
  const seen = new Set<string>();
  for (const [i, p] of ports.entries()) {
    if (seen.has(p.name)) fail(where, `ports[${i}].name`, `repeats ${p.name}`);
    seen.add(p.name);
  }
  if (role === 'relay' && ports.length === 0) fail(where, 'ports', 'must list at least one port for a relay');
  if (role === 'terminal' && ports.length > 0) fail(where, 'ports', 'must be empty for a terminal');
  const storage = oneOf(o.storage, where, 'storage', STORAGES);
  const mqtt = oneOf(o.mqtt, where, 'mqtt', MQTT_SOURCES);
  const crypto = oneOf(o.crypto, where, 'crypto', CRYPTO_BACKENDS);
  const random = oneOf(o.random, where, 'random', RANDOM_SOURCES);
  // What each runtime can actually offer.
  if (runtime !== 'node') {
    if (mqtt !== 'host') fail(where, 'mqtt', `must be host on ${runtime} (no socket library there: the board's native side speaks MQTT)`);
    if (crypto !== 'portable') fail(where, 'crypto', `must be portable on ${runtime} (node:crypto exists only on Node)`);
    if (random !== 'host') fail(where, 'random', `must be host on ${runtime} (the board's RNG through the bridge)`);
    if (storage === 'file') fail(where, 'storage', `cannot be file on ${runtime}: use key-value (the bridge's storage) or none`);
  } else if (mqtt !== 'library') {
    fail(where, 'mqtt', 'must be library on node (MQTT.js)');
  }
  return { name, description, runtime, role, budget, ports, storage, mqtt, crypto, random };
}
