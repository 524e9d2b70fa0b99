/**
 * Preloaded (node --expose-gc --import) into a server process a bench
 * measures: kagi up, or the floor's plain aedes. On SIGUSR2 it collects
 * garbage (twice: the first pass runs finalizers whose memory the second
 * frees), optionally writes a heap snapshot, waits for the RSS to settle,
 * and prints one line
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

/**
 * After a collection V8 hands the freed pages back on a background thread
 * (its unmapper), so an RSS read at once still counts pages about to go:
 * in one run 3.9 KiB per device that /proc/self/smaps, read a moment
 * later, no longer showed. Read only once two reads 100 ms apart agree
 * within 64 KiB (at most 5 s).
 */
const SETTLE_STEP_MS = 100;
const SETTLE_BYTES = 64 * 1024;
const SETTLE_MAX_MS = 5_000;

function settled(done: () => void): void {
  const t0 = Date.now();
  let last = process.memoryUsage.rss();
  const step = (): void => {
    const now = process.memoryUsage.rss();
    if (Math.abs(now - last) <= SETTLE_BYTES || Date.now() - t0 >= SETTLE_MAX_MS) return done();
    last = now;
    setTimeout(step, SETTLE_STEP_MS);
  };
  setTimeout(step, SETTLE_STEP_MS);
}

process.on('SIGUSR2', () => {
  if (gc) {
    gc();
    gc();
  }
  const dir = process.env.KAGI_HEAP_SNAPSHOT_DIR;
  const snapshot = dir ? writeHeapSnapshot(join(dir, `${basename(process.argv[1] ?? 'node', '.js')}-${process.pid}-${++probes}.heapsnapshot`)) : undefined;
  settled(() => {
    const m = process.memoryUsage();
    process.stdout.write(`memory-probe ${JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, ...resident(), gc: gc !== undefined, ...(snapshot ? { snapshot } : {}) })}\n`);
  });
});
