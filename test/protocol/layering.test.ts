/**
 * protocol/ must bundle for boards: no node: modules, no Node builtins by
 * bare name, no Buffer, and only dependencies that are pure JavaScript.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';

const ALLOWED_DEPS = /^(cbor-x|@stablelib\/[a-z0-9-]+)$/;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

t.test('protocol/ imports nothing host-specific', async (t) => {
  const files = sources('protocol');
  t.ok(files.length >= 10, `${files.length} protocol sources scanned`);
  const problems: string[] = [];
  for (const f of files) {
    const src = readFileSync(f, 'utf8');
    for (const m of src.matchAll(/from\s+'([^']+)'/g)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) continue;
      if (spec.startsWith('node:') || builtinModules.includes(spec)) problems.push(`${f}: imports ${spec}`);
      else if (!ALLOWED_DEPS.test(spec)) problems.push(`${f}: imports ${spec}, not on the board-safe list`);
    }
    if (/\bBuffer\b/.test(src.replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, ''))) problems.push(`${f}: uses Buffer`);
  }
  t.same(problems, [], 'no node: imports, no Buffer, only board-safe dependencies');
});
