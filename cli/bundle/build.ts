/**
 * Board bundles: one self-contained, minified file per board profile
 * (dist/boards/NAME/agent.js), built with rollup from the compiled agent.
 *
 *  - node profiles: the Node agent (cli/board-agent.js) with
 *    MQTT.js inside; only Node's own modules stay outside.
 *  - quickjs / xs profiles: the bridge agent (device/board/main.js); the
 *    board's native side provides the host bridge (docs/boards.md).
 *
 * No eval or new Function (XS forbids them): cbor-x's optional record
 * reader is built with new Function, so its source is rewritten to the
 * same BlockedFunction its own no-eval build uses, and the finished bundle
 * is checked. A bundle over its profile's flash budget fails the build.
 */
import { rollup, type Plugin, type RollupOptions, type OutputOptions } from 'rollup';
import { nodeResolve } from '@rollup/plugin-node-resolve';
import commonjsPlugin from '@rollup/plugin-commonjs';
import jsonPlugin from '@rollup/plugin-json';
import terserPlugin from '@rollup/plugin-terser';
import { builtinModules } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import { writePrivateFile } from '../../servers/private-file.js';
import { cachedBuild } from './cache.js';
import { gzipSync } from 'node:zlib';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BoardProfile } from '../../device/board-profile.js';
import { KagiError } from '../../protocol/errors.js';

// These plugins' ESM builds export the function as default; their CommonJS
// typings make TypeScript (NodeNext) see a namespace instead.
const commonjs = commonjsPlugin as unknown as typeof commonjsPlugin.default;
const json = jsonPlugin as unknown as typeof jsonPlugin.default;
const terser = terserPlugin as unknown as typeof terserPlugin.default;

/**
 * The compiled tree bundles are made from: dist/ (this file is
 * dist/cli/bundle/build.js; run from source, as tests do, the build's dist/).
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIST = basename(ROOT) === 'dist' ? ROOT : join(ROOT, 'dist');

export interface BundleResult {
  profile: string;
  file: string;
  bytes: number;
  gzipBytes: number;
  budget: number;
}

/** cbor-x builds an optional object reader with new Function; rewrite it as its no-eval build does. */
function noEval(): Plugin {
  return {
    name: 'kagi-no-eval',
    transform(code, id) {
      if (!/[\\/]cbor-x[\\/]/.test(id)) return null;
      return { code: code.replace(/\bnew Function\(/g, 'new BlockedFunction('), map: null };
    },
  };
}

/** What is still eval-like in a finished bundle (should be nothing): eval(…), Function(…), new Function(…). */
export function evalUses(code: string): string[] {
  return [...code.matchAll(/(?<![.\w$])(?:eval|Function)\s*\(/g)].map((m) => code.slice(Math.max(0, m.index - 30), m.index + 40));
}

export function rollupOptions(profile: BoardProfile, device: unknown, outDir: string): RollupOptions & { output: OutputOptions } {
  const node = profile.runtime === 'node';
  const input = join(DIST, node ? 'cli/board-agent.js' : 'device/board/main.js');
  const baked = `const __KAGI_BOARD__ = ${JSON.stringify({ profile, device: device ?? null })};`;
  return {
    input,
    external: node ? [...builtinModules, ...builtinModules.map((m) => `node:${m}`)] : [],
    onwarn: (w, warn) => {
      // MQTT.js's CommonJS has circular requires and `this` at top level: harmless here.
      if (w.code === 'CIRCULAR_DEPENDENCY' || w.code === 'THIS_IS_UNDEFINED') return;
      warn(w);
    },
    plugins: [
      noEval(),
      nodeResolve(node ? { preferBuiltins: true, exportConditions: ['node'] } : { browser: true, preferBuiltins: false }),
      commonjs(),
      json(),
      terser({ format: { comments: false } }),
    ],
    output: {
      file: join(outDir, 'agent.js'),
      format: node ? 'es' : 'iife',
      intro: baked,
      inlineDynamicImports: true,
    },
  };
}

/** The rules every bundle meets (here and in rollup.config.js): no eval-like code, within the flash budget. */
export function checkBundle(profile: BoardProfile, code: string): { bytes: number; gzipBytes: number } {
  const evals = evalUses(code);
  if (evals.length) throw new KagiError('profile', `${profile.name}: the bundle contains eval-like code (${evals.length}): ${evals[0]}`);
  const bytes = Buffer.byteLength(code);
  if (bytes > profile.budget.flashBytes) {
    throw new KagiError('profile', `${profile.name}: bundle is ${bytes} bytes, over its flash budget of ${profile.budget.flashBytes} (budget.flashBytes)`);
  }
  return { bytes, gzipBytes: gzipSync(code, { level: 9 }).length };
}

/**
 * Per-device bundles for a batch (kagi provision --profile): build once with
 * a placeholder where the device file goes, then bake each device in by
 * replacing it; the same bytes as building with that device, at a copy's cost.
 * The bundle with no device is the template with null put in: the bytes
 * rollup makes for no device (test/boards/bundle.test.ts builds both), so a
 * profile costs one rollup run, not two.
 */
// Its only identifier characters are those of `null`: terser names
// variables by how often each character occurs in the output, so the
// template and the build with no device (`device:null`) are mangled alike
// (a placeholder of other letters made them differ once the code changed).
export const DEVICE_PLACEHOLDER = '#<null>#';

export async function deviceTemplate(profile: BoardProfile): Promise<(device: Record<string, unknown> | null) => string> {
  const code = await generate(profile);
  const quoted = JSON.stringify(DEVICE_PLACEHOLDER);
  const at = code.indexOf(quoted);
  if (at < 0 || code.indexOf(quoted, at + 1) >= 0) throw new KagiError('profile', `${profile.name}: the device placeholder did not survive the build exactly once`);
  return (device) => {
    const out = code.slice(0, at) + JSON.stringify(device) + code.slice(at + quoted.length);
    checkBundle(profile, out);
    return out;
  };
}

/** Run rollup for a profile with the device placeholder (rollupCode): from the cache when this build of kagi made it before. */
function generate(profile: BoardProfile): Promise<string> {
  return cachedBuild(DIST, { profile, device: DEVICE_PLACEHOLDER }, () => rollupCode(profile, DEVICE_PLACEHOLDER));
}

/** Run rollup for a profile and a device (or none), uncached. */
export async function rollupCode(profile: BoardProfile, device: unknown): Promise<string> {
  const opts = rollupOptions(profile, device, join(DIST, 'boards', profile.name));
  const build = await rollup(opts);
  try {
    return (await build.generate(opts.output)).output[0].code;
  } finally {
    await build.close();
  }
}

/**
 * Build one profile's bundle; throws when it is over budget or eval-like
 * code slipped in. A bundle with a device baked in holds its secret key: it
 * goes to its own `file` (0600), never into the shared build folder. Both
 * are the profile's template with the device file (or null) put in.
 */
export async function buildBundle(profile: BoardProfile, o: { device?: Record<string, unknown>; outRoot?: string; file?: string } = {}): Promise<BundleResult> {
  if (o.device !== undefined && !o.file) throw new KagiError('profile', 'a bundle with a device baked in needs its own file');
  const outDir = o.file ? dirname(o.file) : join(o.outRoot ?? join(DIST, 'boards'), profile.name);
  const code = (await deviceTemplate(profile))(o.device ?? null);
  const { bytes, gzipBytes } = checkBundle(profile, code);
  const result = { profile: profile.name, file: o.file ?? join(outDir, 'agent.js'), bytes, gzipBytes, budget: profile.budget.flashBytes };
  mkdirSync(outDir, { recursive: true });
  if (o.device !== undefined) writePrivateFile(result.file, code);
  else writeFileSync(result.file, code);
  return result;
}

export function formatSize(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}
