/**
 * A JSON file an agent keeps (its counters, its tickets), replaced by
 * rename so a crash leaves the old file or the new one, never half of
 * either. Written off the event loop and coalesced: every `save()` resolves
 * once a write made after it has been renamed into place, so a caller that
 * waits for it (a send counter's reservation) has what it saved on disk
 * exactly as before; saves made in the same turn, or while a write is under
 * way, share the next one. One write at a time per file, so renames land
 * in order.
 *
 * Why: the synchronous write and rename of every save blocked the event
 * loop for each of them. A device does a handful per re-join, but a host
 * of many agents (bench:storm's 10,000 in one process) spent 44% of its
 * thread in open and rename (decision 112).
 */
import { existsSync, readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';

/**
 * Out of file handles for the moment (the process's, the host's): a write
 * waits and tries again rather than fail what saved. A ticket rotated by
 * the server and not saved would be presented again at the next start as
 * a retired one, a theft signal that costs the device its tickets. A host
 * of many agents meets this when they all save at once (bench:storm's
 * 10,000 in one process, each with its connection open).
 */
const OUT_OF_HANDLES = new Set(['EMFILE', 'ENFILE']);
/** How long a write waits for handles before it fails (ms). */
export const HANDLES_WAIT_MS = 30_000;

export class JsonFile<T extends Record<string, unknown>> {
  /**
   * `last`: the latest write (settled either way), which the next one waits
   * for; `next`: the write that has not started yet, which saves share.
   */
  private chain: { last: Promise<void>; next: Promise<void> | null } = { last: Promise.resolve(), next: null };

  constructor(
    private readonly file: string,
    /** The content to write, taken when a write starts (so it holds every save made before). */
    private readonly content: () => T,
  ) {}

  /** The file's content, or undefined when there is none. */
  static read<T>(file: string): T | undefined {
    return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as T) : undefined;
  }

  save(): Promise<void> {
    if (this.chain.next) return this.chain.next;
    // The write starts on the next turn, so the saves of this one share it:
    // an agent reserves its counters for every peer and its CONNECT at
    // start, each a save, and they go out as one write (decision 120).
    const next = this.chain.last.then(() => new Promise((r) => setImmediate(r))).then(() => {
      // From here a save needs a later write: what it changes may come after our snapshot.
      this.chain = { ...this.chain, next: null };
      return this.write();
    });
    this.chain = { last: next.catch(() => {}), next };
    return next;
  }

  private async write(): Promise<void> {
    const tmp = `${this.file}.tmp-${process.pid}`; // per process, so a stray second writer cannot rename ours away
    const text = JSON.stringify(this.content());
    const until = Date.now() + HANDLES_WAIT_MS;
    for (let pause = 5; ; pause = Math.min(pause * 2, 500)) {
      try {
        await writeFile(tmp, text, { mode: 0o600 });
        await rename(tmp, this.file);
        return;
      } catch (e) {
        if (!OUT_OF_HANDLES.has((e as NodeJS.ErrnoException).code ?? '') || Date.now() + pause > until) throw e;
        await new Promise((r) => setTimeout(r, pause * (0.5 + Math.random()))); // jittered, so waiting writers do not come back together
      }
    }
  }
}
