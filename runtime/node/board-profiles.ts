/** board-profiles/ on disk: find, list and load (checked by device/board-profile.ts). */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { parseProfile, type BoardProfile } from '../../device/board-profile.js';
import { KagiError } from '../../protocol/errors.js';

/** board-profiles/ of this checkout or package: the nearest one above this file (source or dist/). */
export function profilesDir(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, d = dirname(d)) {
    if (existsSync(join(d, 'board-profiles'))) return join(d, 'board-profiles');
  }
  throw new Error('board-profiles/ not found');
}

export function listProfiles(dir = profilesDir()): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
}

/** Load and check board-profiles/NAME.json (or a path to a profile file). */
export function loadProfile(nameOrFile: string, dir = profilesDir()): BoardProfile {
  const file = nameOrFile.endsWith('.json') ? nameOrFile : join(dir, `${nameOrFile}.json`);
  if (!nameOrFile.endsWith('.json') && !/^[a-z0-9-]+$/.test(nameOrFile)) throw new KagiError('profile', `profile name '${nameOrFile}' must be lower-case letters, digits and dashes`);
  if (!existsSync(file)) throw new KagiError('profile', `no board profile '${nameOrFile}' (${file}); known: ${listProfiles(dir).join(', ')}`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new KagiError('profile', `${file}: not JSON (${(e as Error).message})`);
  }
  const p = parseProfile(json, file);
  if (!nameOrFile.endsWith('.json') && p.name !== nameOrFile) throw new KagiError('profile', `${file}: name must be ${nameOrFile} (the file's name), not ${p.name}`);
  return p;
}
