/**
 * A JSON file an agent keeps (its counters, its tickets), written so that a
 * crash leaves the old content or the new, never half of either, and
 * coalesced: every `save()` resolves once a write made after it is on
 * disk (in the page cache; nothing is fsynced, decision 112), so a caller
 * that waits for it (a send counter's reservation) has what it saved on
 * disk. Saves made in the same turn, or while a write is under way, share
 * the next. One write at a time per file.
 *
 * The file holds two slots (slots.ts), and a save writes the older one in
 * place, which costs an open, a pwrite and a close (decision 131). Only a
 * new file, one in the plain JSON of earlier versions, or content grown
 * past its slot is written whole: a temp file, then a rename.
 */
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { encodeSlot, fits, isPlainJson, readSlots, slotSizeFor, type SlotLayout } from './slots.js';

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

  /** Where the current content is in the file, once read or written (undefined: the next write is whole). */
  private layout: SlotLayout | undefined;

  constructor(
    private readonly file: string,
    /** The content to write, taken when a write starts (so it holds every save made before). */
    private readonly content: () => T,
  ) {}

  /** The file's content, or undefined when there is none. */
  static read<T>(file: string): T | undefined {
    return readContent<T>(file).value;
  }

  /** The file's content (undefined when there is none), read once at start: later writes go to its other slot. */
  load(): T | undefined {
    const { value, layout } = readContent<T>(this.file);
    this.layout = layout;
    return value;
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
    const content = Buffer.from(JSON.stringify(this.content()), 'utf8');
    const until = Date.now() + HANDLES_WAIT_MS;
    for (let pause = 5; ; pause = Math.min(pause * 2, 500)) {
      try {
        this.layout = await this.put(content);
        return;
      } catch (e) {
        if (!OUT_OF_HANDLES.has((e as NodeJS.ErrnoException).code ?? '') || Date.now() + pause > until) throw e;
        await new Promise((r) => setTimeout(r, pause * (0.5 + Math.random()))); // jittered, so waiting writers do not come back together
      }
    }
  }

  /** In the older slot when the content fits it; else (or when the file is gone) a whole new file. */
  private async put(content: Uint8Array): Promise<SlotLayout> {
    if (this.layout && fits(this.layout.size, content.length)) {
      try {
        return this.inPlace(this.layout, content);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    return this.whole(content);
  }

  /**
   * The older slot, overwritten in place. Synchronous: an open, one pwrite
   * into the page cache and a close (~10 µs) cost less than the three trips
   * to libuv's pool and back that the same calls would take.
   */
  private inPlace(at: SlotLayout, content: Uint8Array): SlotLayout {
    const next: SlotLayout = { size: at.size, generation: at.generation + 1, slot: at.slot === 0 ? 1 : 0 };
    const bytes = encodeSlot(next.size, next.generation, content);
    const fd = openSync(this.file, 'r+');
    try {
      const n = writeSync(fd, bytes, 0, bytes.length, next.slot * next.size);
      if (n !== bytes.length) throw new Error(`${this.file}: wrote ${n} of ${bytes.length} bytes`); // the disk full: the save fails, the other slot stands
    } finally {
      closeSync(fd);
    }
    return next;
  }

  /** A new file with the content in slot 0, renamed into place. */
  private async whole(content: Uint8Array): Promise<SlotLayout> {
    const next: SlotLayout = { size: slotSizeFor(content.length), generation: (this.layout?.generation ?? 0) + 1, slot: 0 };
    const tmp = `${this.file}.tmp-${process.pid}`; // per process, so a stray second writer cannot rename ours away
    await writeFile(tmp, encodeSlot(next.size, next.generation, content), { mode: 0o600 });
    await rename(tmp, this.file);
    return next;
  }
}

/** A file's content and layout; a plain JSON file (earlier versions) has no layout, so its next write is whole. */
function readContent<T>(file: string): { value: T | undefined; layout?: SlotLayout } {
  return existsSync(file) ? parseContent<T>(readFileSync(file), file) : { value: undefined };
}

/** The content of a file's bytes (`file` names it in the error when no slot is intact). */
export function parseContent<T>(bytes: Uint8Array, file = 'the file'): { value: T; layout?: SlotLayout } {
  if (isPlainJson(bytes)) return { value: JSON.parse(Buffer.from(bytes).toString('utf8')) as T };
  const got = readSlots(bytes);
  if (!got) throw new Error(`${file}: no intact copy of its content in it (not a kagi file, or damaged)`);
  return { value: JSON.parse(Buffer.from(got.content).toString('utf8')) as T, layout: got.layout };
}
