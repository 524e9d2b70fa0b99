/** The PostgreSQL on 127.0.0.1:5432 (database test), a schema per test, dropped after; skipped loudly if absent. */
import pg from 'pg';

export const POSTGRES = process.env.KAGI_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Why PostgreSQL tests cannot run here, or null. Prints the loud skip line. */
export async function postgresMissing(): Promise<string | null> {
  const c = new pg.Client({ connectionString: POSTGRES, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.end();
    return null;
  } catch (e) {
    const why = `PostgreSQL at ${POSTGRES} is not reachable (${(e as Error).message})`;
    console.error(`\n*** PostgreSQL tests SKIPPED: ${why} ***\n`);
    return why;
  }
}

let n = 0;
/** A fresh schema's store URL; the schema is dropped at teardown. */
export function postgresSchema(t: { teardown(fn: () => unknown): void }): string {
  const schema = `kagi_t${process.pid}_${Date.now().toString(36)}_${n++}`;
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: POSTGRES });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.end();
  });
  return `${POSTGRES}?schema=${schema}`;
}
