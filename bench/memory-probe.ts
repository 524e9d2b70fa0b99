/**
 * Preloaded (node --expose-gc --import) into a server process a bench
 * measures: kagi up, or the floor's plain aedes. On SIGUSR2 it collects
 * garbage (twice: the first pass runs finalizers whose memory the second
 * frees), optionally writes a heap snapshot, and prints one line
 * `memory-probe {rss, heapUsed, heapTotal, external, arrayBuffers, malloc,
 * anon, files}` on
 * stdout. It lives outside kagi so that kagi up carries no bench hooks.
 *
 * KAGI_HEAP_SNAPSHOT_DIR=DIR: each probe also writes DIR/<script>-<pid>-<n>.heapsnapshot
 * (the snapshot itself costs memory: the probes after it measure that too).
 */
import { writeHeapSnapshot } from 'node:v8';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

/**
 * Resident bytes by kind of mapping (Linux /proc/self/smaps; zeros
 * elsewhere): malloc's main arena ([heap]: SQLite's cache, OpenSSL, libuv,
 * Node's native objects), anonymous mappings (V8's heap pages, large
 * mallocs, other arenas) and files (code, the database's shared memory).
 */
function resident(): { malloc: number; anon: number; files: number } {
  const out = { malloc: 0, anon: 0, files: 0 };
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return out;
  }
  let kind: keyof typeof out = 'anon';
  for (const line of text.split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) kind = m[1] === '[heap]' ? 'malloc' : m[1]!.startsWith('/') ? 'files' : 'anon';
    else if (line.startsWith('Rss:')) out[kind] += Number(line.split(/\s+/)[1]) * 1024;
  }
  return out;
}

const gc = (globalThis as { gc?: () => void }).gc;
let probes = 0;
process.on('SIGUSR2', () => {
  if (gc) {
    gc();
    gc();
  }
  const dir = process.env.KAGI_HEAP_SNAPSHOT_DIR;
  const snapshot = dir ? writeHeapSnapshot(join(dir, `${basename(process.argv[1] ?? 'node', '.js')}-${process.pid}-${++probes}.heapsnapshot`)) : undefined;
  const m = process.memoryUsage();
  process.stdout.write(`memory-probe ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, ...resident(), gc: gc !== undefined, ...(snapshot ? { snapshot } : {}) })}\n`);
});
