/**
 * The README runs as written: every ```sh block, in order, in one shell, in
 * an empty folder, with `kagi` on the PATH — what a new user does first, on
 * a machine where port 1883 is already taken.
 *
 * What the harness changes, explicitly:
 * - PLACEHOLDERS below: fixed ports in the README become free ones, so two
 *   runs (or a real service on that port) cannot collide.
 * - A line ending in `&` starts a long-running command; the harness waits
 *   for the line it prints when ready (READY) before the next line, as a
 *   person would by watching it.
 * - A block preceded by `<!-- readme-test: skip: REASON -->` is not run and
 *   is reported as skipped with REASON (root-only host changes, other hosts,
 *   the suite itself).
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tempDir } from './helpers/control-plane.js';
import { freePort } from './helpers/ports.js';

const ROOT = resolve(import.meta.dirname, '..');

interface Block {
  line: number;
  code: string;
  skip?: string;
}

/** The ```sh blocks of a markdown text, with their skip directives. */
export function shellBlocks(md: string): Block[] {
  const out: Block[] = [];
  const lines = md.split('\n');
  let skip: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const d = /^<!-- readme-test: skip: (.+?) -->$/.exec(lines[i]!);
    if (d) {
      skip = d[1];
      continue;
    }
    if (lines[i] !== '```sh') continue;
    const start = i + 1;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!);
    out.push({ line: start, code: body.join('\n'), ...(skip ? { skip } : {}) });
    skip = undefined;
  }
  return out;
}

/** How a background command says it is ready. */
const READY: [RegExp, string][] = [
  [/^kagi up\b/, 'kagi up: .*broker'],
  [/agent(\.js)? \S+\.json .*--profile node-relay/, 'port p4 on'],
  [/agent(\.js)? /, 'state: (joined|configured)|joined |configured'],
];

/** Turn a README block into bash: background lines log to a file and are waited for. */
function script(block: Block, n: number, ports: Record<string, string>): string {
  const out: string[] = [];
  let k = 0;
  for (let raw of block.code.split('\n')) {
    for (const [from, to] of Object.entries(ports)) raw = raw.replaceAll(from, to);
    const line = raw.replace(/\s+#.*$/, '').replace(/^#.*$/, '').trim();
    if (!line) continue;
    const shown = JSON.stringify(line);
    if (line.endsWith('&')) {
      const cmd = line.slice(0, -1).trim();
      const ready = READY.find(([re]) => re.test(cmd.replace(/^echo .*?\| /, '')))?.[1];
      if (!ready) throw new Error(`README line ${block.line}: no READY pattern for background command: ${line}`);
      const log = `bg-${n}-${k++}.log`;
      out.push(`echo "+ ${line.replaceAll('"', '\\"')}"`, `( ${cmd} ) > ${log} 2>&1 &`, `wait_ready ${log} ${JSON.stringify(ready)} ${shown} $!`);
    } else {
      out.push(`echo "+ ${line.replaceAll('"', '\\"')}"`, `${line} || fail ${shown}`);
    }
  }
  return out.join('\n');
}

const PRELUDE = `set -u
fail() { echo "README FAILED: $1 (exit $?)"; exit 1; }
# Wait for a background command's ready line; it must not have died.
wait_ready() {
  local log=$1 re=$2 what=$3 pid=$4
  for i in $(seq 1 $((600 * \${KAGI_TEST_SLOWDOWN:-1}))); do
    grep -Eq "$re" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log"; fail "$what exited before it was ready"; }
    sleep 0.1
  done
  cat "$log"; fail "$what: not ready within $((60 * \${KAGI_TEST_SLOWDOWN:-1})) s (waiting for /$re/)"
}
`;

const kagiJs = join(ROOT, 'dist', 'cli', 'kagi.js');
const unbuilt = existsSync(kagiJs) ? false : 'dist/cli/kagi.js is missing (npm test builds it first)';
if (unbuilt) console.error(`\n*** README test SKIPPED: ${unbuilt} ***\n`);

t.test('every shell block of the README runs, in order, from an empty folder', { skip: unbuilt }, async (t) => {
  const blocks = shellBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'));
  t.ok(blocks.length >= 5, `found ${blocks.length} shell blocks`);
  const dir = tempDir(t, 'kagi-readme-');
  const bin = join(dir, '.bin');
  // `npm link` in the README; here a shim to this checkout's build.
  mkdirSync(bin);
  writeFileSync(join(bin, 'kagi'), `#!/bin/sh\nexec "${process.execPath}" "${kagiJs}" "$@"\n`);
  chmodSync(join(bin, 'kagi'), 0o755);
  const ports: Record<string, string> = {};
  for (const p of ['18830', '7000']) ports[p] = String(await freePort());

  const parts = [PRELUDE, `cd ${JSON.stringify(dir)}`, `ln -s ${JSON.stringify(join(ROOT, 'dist'))} dist`];
  for (const [i, b] of blocks.entries()) {
    if (b.skip) {
      t.comment(`README block at line ${b.line} SKIPPED: ${b.skip}`);
      continue;
    }
    parts.push(`echo "### block ${i} (README line ${b.line})"`, script(b, i, ports), `echo "### block ${i} ok"`);
  }
  writeFileSync(join(dir, 'readme.sh'), parts.join('\n') + '\n');

  // One process group: everything the README starts in the background is
  // stopped with it at the end, as closing the terminal would.
  const sh = spawn('bash', [join(dir, 'readme.sh')], { cwd: dir, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, detached: true });
  let out = '';
  sh.stdout.on('data', (d) => (out += d));
  sh.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((r) => sh.once('close', r));
  await stopGroup(sh.pid!);
  for (const [i, b] of blocks.entries()) {
    if (!b.skip) t.match(out, `### block ${i} ok`, `README block at line ${b.line} ran`);
  }
  t.equal(code, 0, `the README's commands all succeeded${code === 0 ? '' : `:\n${out.slice(-4000)}`}`);
});

/** SIGTERM a process group (what the README left running) and wait until it is gone; SIGKILL after 15 s. */
async function stopGroup(pgid: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(-pgid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (alive()) {
    if (Date.now() > deadline) process.kill(-pgid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
  }
}
