/** `kagi bundle`: the agent for a board profile as one file. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parse, UsageError } from '../args.js';
import { buildBundle, formatSize, type BundleResult } from '../bundle/build.js';
import { listProfiles, loadProfile } from '../../runtime/node/board-profiles.js';
import { parseBundle } from '../../device/bundle.js';

export const bundleHelp = `usage: kagi bundle --profile NAME [--out DIR]
       kagi bundle --profile NAME --device FILE [--out OUT]
       kagi bundle --all [--out DIR]
       kagi bundle --list

Builds the agent for a board profile (board-profiles/NAME.json) as one
self-contained, minified file: DIR/NAME/agent.js (default DIR: dist/boards).
Prints its size, minified and gzipped, against the profile's flash budget;
a bundle over budget is an error and nothing is written.

  --profile NAME  the board profile
  --device FILE   bake a device file (from kagi device add) into the bundle,
                  for a board that has no storage to provision it into.
                  The output then holds the device's secret key: it is
                  written 0600 to its own file, FILE's name with .agent.js
                  (term-7.json → term-7.agent.js) or --out OUT (a file, or
                  a directory for OUT/ID.agent.js), never into the shared
                  build folder. Without it, the agent reads the device file
                  from the host's storage under "device" (quickjs, xs) or
                  from its command line (node)
  --all           every profile (no --device)
  --list          the profiles and their runtime, role and budgets
  --out DIR       where bundles go (DIR/NAME/agent.js)

QuickJS and XS bundles talk to the board through the host bridge
(docs/boards.md); Node bundles run as: node agent.js DEVICE.json [options].`;

export async function bundle(args: string[]): Promise<number> {
  const { values: v } = parse(args, { profile: { type: 'string' }, device: { type: 'string' }, out: { type: 'string' }, all: { type: 'boolean', default: false }, list: { type: 'boolean', default: false } }, 0);
  if (v.list) {
    for (const name of listProfiles()) {
      const p = loadProfile(name);
      console.log(`${p.name.padEnd(22)} ${p.runtime.padEnd(8)} ${p.role.padEnd(9)} RAM ${formatSize(p.budget.ramBytes).padStart(10)}  flash ${formatSize(p.budget.flashBytes).padStart(10)}`);
    }
    return 0;
  }
  if (!v.all && !v.profile) throw new UsageError('give --profile NAME (or --all, or --list)');
  if (v.all && (v.profile || v.device)) throw new UsageError('--all builds every profile without a device: drop --profile and --device');
  const names = v.all ? listProfiles() : [v.profile!];
  const profiles = names.map((n) => loadProfile(n));
  let device: Record<string, unknown> | undefined;
  let file: string | undefined;
  if (v.device) {
    if (profiles[0]!.runtime === 'node') throw new UsageError('node bundles read the device file from their command line (node agent.js DEVICE.json): drop --device');
    try {
      device = JSON.parse(readFileSync(v.device, 'utf8')) as Record<string, unknown>;
      parseBundle(device);
    } catch (e) {
      throw new UsageError(`${v.device}: ${(e as Error).message}`);
    }
    file = deviceBundleFile(v.device, (device as { id: string }).id, v.out);
  }
  const results: BundleResult[] = [];
  for (const p of profiles) {
    process.stdout.write(`building ${p.name} (${p.runtime} ${p.role})… `);
    const r = await buildBundle(p, device ? { device, file: file! } : v.out ? { outRoot: v.out } : {});
    results.push(r);
    const share = ((100 * r.bytes) / r.budget).toFixed(0);
    console.log(`${formatSize(r.bytes)} min, ${formatSize(r.gzipBytes)} gzip (${share}% of ${formatSize(r.budget)}) → ${r.file}`);
  }
  return 0;
}

/** Where a bundle with a device in it goes: --out (a file, or a dir for DIR/ID.agent.js), else beside the device file. */
function deviceBundleFile(deviceFile: string, id: string, out: string | undefined): string {
  if (out === undefined) return join(dirname(deviceFile), `${basename(deviceFile).replace(/\.json$/i, '')}.agent.js`);
  return existsSync(out) && statSync(out).isDirectory() ? join(out, `${id}.agent.js`) : out;
}
