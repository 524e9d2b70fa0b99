/**
 * The console page's files: its own (servers/console/page/, plain ES
 * modules, no build step) and the libraries it imports, served straight
 * from node_modules under fixed names (an import map in index.html maps
 * the bare names). Only the files listed here are served: no path from a
 * request ever reaches the file system.
 */
import { readFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
/** A package's folder, from its main entry (htm's exports do not list package.json). */
function pkgDir(name: string): string {
  let d = dirname(require.resolve(name));
  while (!existsSync(join(d, 'package.json')) || basename(d) !== name) {
    const up = dirname(d);
    if (up === d) throw new Error(`console: package ${name} not found`);
    d = up;
  }
  return d;
}

/** The repository root (this file runs from servers/console/ or dist/servers/console/). */
function kagiRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'servers', 'console', 'page', 'index.html'))) {
    const up = dirname(d);
    if (up === d) throw new Error('console: servers/console/page not found beside the program');
    d = up;
  }
  return d;
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

export interface StaticFile {
  type: string;
  body: Buffer;
}

/** The import map the page needs, as one inline script. */
export const IMPORT_MAP = JSON.stringify({
  imports: {
    preact: '/vendor/preact.mjs',
    'preact/hooks': '/vendor/preact-hooks.mjs',
    htm: '/vendor/htm.mjs',
    'htm/preact': '/vendor/htm-preact.mjs',
    uplot: '/vendor/uplot.mjs',
  },
});

/** Every URL path the console serves as a file, read once at start. */
export function loadStaticFiles(): { files: Map<string, StaticFile>; importMapHash: string } {
  const page = join(kagiRoot(), 'servers', 'console', 'page');
  const sources: Record<string, string> = {
    '/app.js': join(page, 'app.js'),
    '/style.css': join(page, 'style.css'),
    '/vendor/preact.mjs': join(pkgDir('preact'), 'dist', 'preact.module.js'),
    '/vendor/preact-hooks.mjs': join(pkgDir('preact'), 'hooks', 'dist', 'hooks.module.js'),
    '/vendor/htm.mjs': join(pkgDir('htm'), 'dist', 'htm.module.js'),
    '/vendor/htm-preact.mjs': join(pkgDir('htm'), 'preact', 'index.module.js'),
    '/vendor/uplot.mjs': join(pkgDir('uplot'), 'dist', 'uPlot.esm.js'),
    '/vendor/uplot.css': join(pkgDir('uplot'), 'dist', 'uPlot.min.css'),
  };
  const files = new Map<string, StaticFile>();
  for (const [path, file] of Object.entries(sources)) files.set(path, { type: TYPES[file.slice(file.lastIndexOf('.'))]!, body: readFileSync(file) });
  const html = readFileSync(join(page, 'index.html'), 'utf8').replace('<!--IMPORT-MAP-->', `<script type="importmap">${IMPORT_MAP}</script>`);
  files.set('/', { type: TYPES['.html']!, body: Buffer.from(html) });
  // The inline import map is the page's one inline script: the CSP allows it by its hash.
  return { files, importMapHash: createHash('sha256').update(IMPORT_MAP).digest('base64') };
}
