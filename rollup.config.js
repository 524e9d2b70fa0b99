// Board bundles, one per profile in board-profiles/ (docs/boards.md).
// `kagi bundle` is the usual way; this file serves `npx rollup -c` after
// `npm run build`, with the same options and the same checks (size budget,
// no eval). Output: dist/boards/NAME/agent.js.
import { join } from 'node:path';
import { checkBundle, formatSize, rollupOptions } from './dist/cli/bundle/build.js';
import { listProfiles, loadProfile } from './dist/runtime/node/board-profiles.js';

export default listProfiles().map((name) => {
  const profile = loadProfile(name);
  const o = rollupOptions(profile, undefined, join('dist', 'boards', name));
  o.plugins.push({
    name: 'kagi-budget',
    generateBundle(_out, bundle) {
      const chunk = Object.values(bundle).find((c) => c.type === 'chunk');
      const { bytes, gzipBytes } = checkBundle(profile, chunk.code);
      console.log(`${name}: ${formatSize(bytes)} min, ${formatSize(gzipBytes)} gzip (budget ${formatSize(profile.budget.flashBytes)})`);
    },
  });
  return o;
});
