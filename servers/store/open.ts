/** The store a command asked for: PostgreSQL for a postgres:// URL, else SQLite in the data dir. */
import { SqliteStore } from './sqlite.js';
import { PgStore } from './postgres.js';
import type { Store } from './store.js';
import { DB_FILE, requireKagiData } from '../data-dir.js';

export function isPostgresUrl(spec: string | undefined): spec is string {
  return !!spec && /^postgres(ql)?:\/\//.test(spec);
}

/**
 * Open the tables. Only `kagi up` and `kagi init` create them (`create`);
 * every other command refuses a data dir or schema without them
 * (NoDataError), so a typo never shows up as an empty fleet.
 */
export async function openStore(dataDir: string, store?: string, o: { create?: boolean } = {}): Promise<Store> {
  if (store === undefined) {
    if (o.create === false) requireKagiData(dataDir, DB_FILE);
    return new SqliteStore(dataDir);
  }
  if (!isPostgresUrl(store)) throw new Error(`--store must be a postgres:// URL (SQLite lives in --data DIR), not '${store}'`);
  return PgStore.open(store, o);
}
