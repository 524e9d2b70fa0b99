/**
 * A JSON file an agent keeps (its counters, its tickets), replaced by
 * rename so a crash leaves the old file or the new one, never half of
 * either. Written off the event loop and coalesced: every `save()` resolves
 * once a write made after it has been renamed into place, so a caller that
 * waits for it (a send counter's reservation) has what it saved on disk
 * exactly as before; saves made while a write is under way share the next
 * one. One write at a time per file, so renames land in order.
 *
 * Why: the synchronous write and rename of every save blocked the event
 * loop for each of them. A device does a handful per re-join, but a host
 * of many agents (bench:storm's 10,000 in one process) spent 44% of its
 * thread in open and rename (decision 112).
 */
import { existsSync, readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';

export class JsonFile<T extends Record<string, unknown>> {
  /** The write under way, if any. */
  private writing: Promise<void> | null = null;
  /** Saves waiting for the next write, which starts when the current one ends. */
  private next: { run: Promise<void> } | null = null;

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
    if (this.next) return this.next.run;
    const after = this.writing ?? Promise.resolve();
    const n = {
      run: after.catch(() => {}).then(async () => {
        this.next = null; // from here a save needs a later write: what it changed may be after our snapshot
        const w = this.write();
        this.writing = w;
        try {
          await w;
        } finally {
          if (this.writing === w) this.writing = null;
        }
      }),
    };
    this.next = n;
    return n.run;
  }

  private async write(): Promise<void> {
    const tmp = `${this.file}.tmp`;
    await writeFile(tmp, JSON.stringify(this.content()), { mode: 0o600 });
    await rename(tmp, this.file);
  }
}
