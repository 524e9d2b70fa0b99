/**
 * The layout of an agent's small files on Node (json-file.ts): two slots,
 * each holding one version of the content, the newer written over the
 * older in place (decision 131). A slot is a one-line ASCII header and the
 * content's bytes:
 *
 *   KAGI-SLOT 1 <slot size> <generation> <length> <check>\n<content>
 *
 * at offset 0 (slot 0) or at the slot size (slot 1). The check is 16 hex
 * digits of SHA-256 over the header's numbers and the content: it finds a
 * slot a crash left half written (or a file that is not ours), not an
 * attacker, who could write the file whole. The reader takes the intact
 * slot with the higher generation.
 *
 * Why not a temp file and a rename each time: on ext4 a rename over an
 * existing file flushes the new file's blocks, and creating the temp file
 * allocates an inode; together 0.2–0.7 ms of CPU a save, three saves per
 * restart, which in bench:storm's agents' process cost as much CPU as
 * everything else an agent does. Writing one slot of an existing file is
 * an open, one pwrite and a close: about 10 µs.
 */
import { createHash } from 'node:crypto';

const MAGIC = 'KAGI-SLOT 1 ';
/** Room kept for the header (its numbers are at most 16 digits each). */
export const HEADER_MAX = 96;
/** The smallest slot: one page. */
export const MIN_SLOT = 4096;

/** Where the current content is: which slot, its generation, the slots' size. */
export interface SlotLayout {
  size: number;
  generation: number;
  slot: 0 | 1;
}

function check(size: number, generation: number, content: Uint8Array): string {
  return createHash('sha256').update(`${size} ${generation} ${content.length}\n`).update(content).digest('hex').slice(0, 16);
}

/** One slot's bytes: header and content (not padded: the length in the header says where it ends). */
export function encodeSlot(size: number, generation: number, content: Uint8Array): Uint8Array {
  const header = Buffer.from(`${MAGIC}${size} ${generation} ${content.length} ${check(size, generation, content)}\n`, 'latin1');
  if (header.length + content.length > size) throw new RangeError(`slot of ${size} bytes cannot hold ${content.length} bytes`);
  return Buffer.concat([header, content]);
}

/**
 * A slot size with room for content of `length` bytes to grow to about
 * twice its size: a power of two, at least a page.
 */
export function slotSizeFor(length: number): number {
  let size = MIN_SLOT;
  while (size < 2 * (length + HEADER_MAX)) size *= 2;
  return size;
}

/** Whether content of `length` bytes fits a slot of `size`. */
export function fits(size: number, length: number): boolean {
  return HEADER_MAX + length <= size;
}

interface Slot {
  size: number;
  generation: number;
  content: Uint8Array;
}

/** The intact slot at `offset` (one that says it is `size` bytes, when given), or undefined. */
function slotAt(file: Uint8Array, offset: number, size?: number): Slot | undefined {
  const end = file.indexOf(0x0a, offset);
  if (end < 0 || end - offset > HEADER_MAX) return undefined;
  const header = Buffer.from(file.buffer, file.byteOffset + offset, end - offset).toString('latin1');
  if (!header.startsWith(MAGIC)) return undefined;
  const m = /^(\d{1,16}) (\d{1,16}) (\d{1,16}) ([0-9a-f]{16})$/.exec(header.slice(MAGIC.length));
  if (!m) return undefined;
  const [s, g, l] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if ((size !== undefined && s !== size) || s < MIN_SLOT || end + 1 + l > offset + s || end + 1 + l > file.length) return undefined;
  const content = file.subarray(end + 1, end + 1 + l);
  return check(s, g, content) === m[4] ? { size: s, generation: g, content } : undefined;
}

/**
 * The newer intact slot of a file in this layout, or undefined when no
 * slot is intact. Slot 1's offset is slot 0's size; when slot 0 is torn,
 * every power of two from a page up is tried.
 */
export function readSlots(file: Uint8Array): { content: Uint8Array; layout: SlotLayout } | undefined {
  const first = slotAt(file, 0);
  let second: Slot | undefined;
  for (let size = first?.size ?? MIN_SLOT; size < file.length && !second; size *= 2) {
    second = slotAt(file, size, size);
    if (first) break;
  }
  const newer = first && (!second || first.generation > second.generation) ? { s: first, slot: 0 as const } : second ? { s: second, slot: 1 as const } : undefined;
  return newer && { content: newer.s.content, layout: { size: newer.s.size, generation: newer.s.generation, slot: newer.slot } };
}

/**
 * Whether a file is the plain JSON object earlier versions wrote (its
 * first byte `{`); anything else is read as slots, a torn slot 0 included.
 */
export function isPlainJson(file: Uint8Array): boolean {
  return file[0] === 0x7b;
}
