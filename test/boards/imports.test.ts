/**
 * device/ and protocol/ run on boards: they import no node: module and no
 * package outside the few that bundle for every runtime (DESIGN §2).
 */
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
/** Packages that bundle for QuickJS and XS: pure JS, no host modules. */
const BUNDLES = [/^cbor-x$/, /^@stablelib\//];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

export function importsOf(code: string): string[] {
  const out: string[] = [];
  for (const m of code.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g)) out.push(m[1]!);
  for (const m of code.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  for (const m of code.matchAll(/\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  return out;
}

t.test('the import scan sees every form', async (t) => {
  t.same(importsOf(`import { a } from 'node:fs';\nimport type { B } from "mqtt";\nexport { c } from './c.js';\nconst x = await import('node:net');\nrequire('os');`), ['node:fs', 'mqtt', './c.js', 'node:net', 'os'], 'static, type, re-export, dynamic, require');
});

t.test('device/ and protocol/ import only what bundles for boards', async (t) => {
  const files = [...sources(join(ROOT, 'device')), ...sources(join(ROOT, 'protocol'))];
  t.ok(files.length > 20, `${files.length} source files scanned`);
  const bad: string[] = [];
  for (const f of files) {
    for (const spec of importsOf(readFileSync(f, 'utf8'))) {
      if (spec.startsWith('.')) {
        // Relative imports must stay inside device/ and protocol/.
        const target = relative(ROOT, join(f, '..', spec));
        if (!/^(device|protocol)\//.test(target)) bad.push(`${relative(ROOT, f)} → ${spec} (outside device/ and protocol/)`);
      } else if (!BUNDLES.some((re) => re.test(spec))) {
        bad.push(`${relative(ROOT, f)} → ${spec}`);
      }
    }
  }
  t.same(bad, [], 'no node: modules, no host-only packages, no reach into servers/ or runtime/');
});
