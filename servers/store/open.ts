/** The store a command asked for: PostgreSQL for a postgres:// URL, else SQLite in the data dir. */
import { SqliteStore } from './sqlite.js';
import { PgStore } from './postgres.js';
import type { Store } from './store.js';

export function isPostgresUrl(spec: string | undefined): spec is string {
  return !!spec && /^postgres(ql)?:\/\//.test(spec);
}

export async function openStore(dataDir: string, store?: string): Promise<Store> {
  if (store === undefined) return new SqliteStore(dataDir);
  if (!isPostgresUrl(store)) throw new Error(`--store must be a postgres:// URL (SQLite lives in --data DIR), not '${store}'`);
  return PgStore.open(store);
}
