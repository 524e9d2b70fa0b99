/**
 * The control plane's static X25519 keys (broker, auth, config, keys), kept
 * in DATA/keys.json (0600), made on first use. Devices get the public halves
 * in their bundle.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KEYS_FILE, makeDataDir, requireKagiData } from './data-dir.js';
import type { Crypto } from '../protocol/crypto/backend.js';
import { fromHex, toHex } from '../protocol/bytes.js';

export const PARTIES = ['broker', 'auth', 'config', 'keys'] as const;
export type Party = (typeof PARTIES)[number];
export type ServiceKeys = Record<Party, { secretKey: Uint8Array; publicKey: Uint8Array }>;

/** The keys in DATA/keys.json; made there first unless `create` is false (then a missing file is a NoDataError). */
export function loadServiceKeys(dataDir: string, c: Crypto, o: { create?: boolean } = {}): ServiceKeys {
  const file = join(dataDir, KEYS_FILE);
  if (existsSync(file)) {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    return Object.fromEntries(
      PARTIES.map((p) => {
        const secretKey = fromHex(raw[p] ?? '');
        return [p, { secretKey, publicKey: c.publicKey(secretKey) }];
      }),
    ) as ServiceKeys;
  }
  if (o.create === false) requireKagiData(dataDir, KEYS_FILE);
  makeDataDir(dataDir);
  const keys = Object.fromEntries(PARTIES.map((p) => [p, c.generateKeyPair()])) as ServiceKeys;
  writeFileSync(file, JSON.stringify(Object.fromEntries(PARTIES.map((p) => [p, toHex(keys[p].secretKey)])), null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  return keys;
}

export function publicKeys(k: ServiceKeys): Record<Party, string> {
  return Object.fromEntries(PARTIES.map((p) => [p, toHex(k[p].publicKey)])) as Record<Party, string>;
}
