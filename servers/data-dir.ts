/**
 * The control plane's data dir: kagi.db (SQLite tables, unless they live in
 * PostgreSQL), keys.json (the services' keys), broker.json (the broker the
 * last `kagi up` served, so the files made for devices and admins point at
 * it) and locks/ (who runs what on it: data-dir-lock.ts).
 *
 * Only `kagi up` and `kagi init` make one; every other command refuses a dir
 * that holds no kagi data, so a typo in --data is an error, never an empty
 * store that looks like lost data.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseBrokerTls, type BrokerTls } from '../protocol/broker-tls.js';
import { looserThan, makePrivateDir, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, writePrivateFile } from './private-file.js';

export const DB_FILE = 'kagi.db';
export const KEYS_FILE = 'keys.json';
export const BROKER_FILE = 'broker.json';

/** The broker a device or admin file names when nothing else says (MQTT's own port). */
export const DEFAULT_BROKER = 'mqtt://127.0.0.1:1883';

/** An admin command pointed at a dir with no kagi data in it. */
export class NoDataError extends Error {
  override readonly name = 'NoDataError';
}

/** Does `dir` hold a control plane's data (its keys, or its SQLite tables)? */
export function hasKagiData(dir: string): boolean {
  return existsSync(join(dir, KEYS_FILE)) || existsSync(join(dir, DB_FILE));
}

/**
 * Refuse a dir without `file` (kagi.db for the SQLite tables, keys.json for
 * the services' keys), saying where to look instead.
 */
export function requireKagiData(dir: string, file: typeof DB_FILE | typeof KEYS_FILE): void {
  if (existsSync(join(dir, file))) return;
  const pg = file === DB_FILE && existsSync(join(dir, KEYS_FILE));
  throw new NoDataError(
    `no kagi data in ${resolve(dir)} (no ${file})` +
      (pg
        ? `: its control plane keeps its tables elsewhere; pass the same --store postgres://… as kagi up`
        : `: point --data at the control plane's data dir (kagi up prints it; the default is ./kagi-data), ` +
          `use --remote FILE for a control plane elsewhere, or make a new one with kagi init --data ${dir}`),
  );
}

/** Make the data dir (0700) if it is new. */
export function makeDataDir(dir: string): void {
  makePrivateDir(dir);
}

/** Lines to warn about at start: the dir or a secret file in it readable beyond its owner. */
export function dataDirWarnings(dir: string): string[] {
  return [
    ...looserThan([dir], PRIVATE_DIR_MODE),
    ...looserThan([DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`, KEYS_FILE].map((f) => join(dir, f)), PRIVATE_FILE_MODE),
  ];
}

/** The broker device and admin files name, and how an mqtts:// one is checked. */
export interface FileBroker {
  broker: string;
  brokerTls?: BrokerTls;
}

/** Record the broker this control plane serves, for the files made afterwards. */
export function recordBroker(dir: string, b: FileBroker): void {
  writePrivateFile(join(dir, BROKER_FILE), JSON.stringify({ broker: b.broker, ...(b.brokerTls ? { brokerTls: b.brokerTls } : {}), recordedAt: new Date().toISOString() }, null, 2) + '\n');
}

/** The broker the last `kagi up` on `dir` served, if it said (and said it well). */
export function recordedBroker(dir: string): FileBroker | undefined {
  try {
    const j = JSON.parse(readFileSync(join(dir, BROKER_FILE), 'utf8')) as { broker?: unknown; brokerTls?: unknown };
    if (typeof j.broker !== 'string' || !/^mqtts?:\/\//.test(j.broker)) return undefined;
    const brokerTls = parseBrokerTls(j.brokerTls, j.broker);
    return { broker: j.broker, ...(brokerTls ? { brokerTls } : {}) };
  } catch {
    return undefined;
  }
}
