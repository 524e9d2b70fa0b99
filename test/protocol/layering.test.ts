/**
 * protocol/ must bundle for boards: no node: modules, no Node builtins by
 * bare name, no Buffer, and only dependencies that are pure JavaScript.
 * And the folders depend on each other one way only (see MAY_IMPORT).
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, sep } from 'node:path';

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

/**
 * Import arrows run one way: protocol ← device, broker, network, servers ←
 * runtime ← cli. Each top-level folder may import only the folders listed
 * for it (and itself). servers/ may use runtime/node's MQTT link (decision
 * 37): services are Node programs, and runtime/node is the host's
 * implementation of protocol interfaces, which never imports servers/.
 */
const MAY_IMPORT: Record<string, string[]> = {
  protocol: [],
  device: ['protocol'],
  broker: ['protocol'],
  network: ['protocol', 'broker'],
  servers: ['protocol', 'broker', 'network', 'runtime'],
  runtime: ['protocol', 'device'],
  cli: ['protocol', 'device', 'broker', 'network', 'servers', 'runtime'],
};

/** Every relative import of `file`, as the top-level folder it lands in. */
function importedFolders(file: string): { spec: string; folder: string }[] {
  const src = readFileSync(file, 'utf8');
  return [...src.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)].map((m) => {
    const target = normalize(join(dirname(file), m[1]!));
    return { spec: m[1]!, folder: target.split(sep)[0]! };
  });
}

/** Import arrows that go against MAY_IMPORT, as "file: imports spec (folder)". */
function crossings(files: string[]): string[] {
  const out: string[] = [];
  for (const f of files) {
    const own = f.split(sep)[0]!;
    for (const { spec, folder } of importedFolders(f)) {
      if (folder !== own && !MAY_IMPORT[own]!.includes(folder)) out.push(`${f}: imports ${spec} (${folder}/)`);
    }
  }
  return out;
}

t.test('import arrows run one way between the top-level folders', async (t) => {
  const files = Object.keys(MAY_IMPORT).flatMap((d) => sources(d));
  t.ok(files.length >= 90, `${files.length} sources scanned`);
  t.same(crossings(files), [], 'no folder imports one above it');
});

t.test('the layering check catches the crossings it exists for', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kagi-layering-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // Sources as they were: a service reaching into the agent side, the broker
  // into the services, a runtime module into the CLI.
  const bad: Record<string, string> = {
    'servers/admin.ts': "import { MAC_PATTERN } from '../device/bundle.js';",
    'broker/broker.ts': "import type { Metrics } from '../servers/metrics.js';",
    'runtime/node/board-agent.ts': "import { agent } from '../../cli/commands/agent.js';",
  };
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    for (const [f, src] of Object.entries(bad)) {
      mkdirSync(dirname(f), { recursive: true });
      writeFileSync(f, `${src}\n`);
    }
    t.same(crossings(Object.keys(bad).map((f) => f.split('/').join(sep))).length, 3, 'each of the three is reported');
  } finally {
    process.chdir(cwd);
  }
});
