/** Argument parsing shared by the commands (node:util parseArgs, strict). */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Every command on the tables: --data DIR (SQLite and keys.json), --store postgres://… (the tables in PostgreSQL). */
export const DATA_OPTION = { data: { type: 'string', default: './kagi-data' }, store: { type: 'string' } } as const;

/** Parse `args`; `positionals` arguments are expected (or from `positionals` to `max`). */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, positionals: number, max = positionals) {
  let r;
  try {
    r = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const n = r.positionals.length;
  if (n < positionals || n > max) {
    const want = max === positionals ? `${positionals}` : `${positionals} to ${max}`;
    throw new UsageError(`expected ${want} argument${max === 1 ? '' : 's'}, got ${n}`);
  }
  return r;
}

export function int(v: string | undefined, name: string, fallback?: number): number {
  if (v === undefined) {
    if (fallback === undefined) throw new UsageError(`--${name} is required`);
    return fallback;
  }
  const n = Number(v);
  if (!Number.isInteger(n)) throw new UsageError(`--${name} must be an integer, not '${v}'`);
  return n;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration like 500ms, 30s, 5m, 1h, 30d (a bare number is seconds), in ms. */
export function duration(v: string | undefined, name: string, fallbackMs?: number): number {
  if (v === undefined) {
    if (fallbackMs === undefined) throw new UsageError(`--${name} is required`);
    return fallbackMs;
  }
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new UsageError(`--${name} must be a duration like 500ms, 30s, 5m, 1h or 30d, not '${v}'`);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!);
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

/** A byte count like 512, 64KiB, 32MiB, 1GiB (k, m, g are the same binary units), in bytes. */
export function byteSize(v: string | undefined, name: string, fallback?: number): number {
  if (v === undefined) {
    if (fallback === undefined) throw new UsageError(`--${name} is required`);
    return fallback;
  }
  const m = /^(\d+)\s*([a-z]*)$/i.exec(v.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`--${name} must be a size like 512, 64KiB or 32MiB, not '${v}'`);
  return Number(m[1]) * unit;
}

const RATE_UNITS: Record<string, number> = { '': 1, bit: 1, k: 1e3, kbit: 1e3, m: 1e6, mbit: 1e6, g: 1e9, gbit: 1e9 };

/** A rate in bits/s like 500kbit, 24mbit, 1gbit (a bare number is bits/s). */
export function bitrate(v: string | undefined, name: string, fallback?: number): number {
  if (v === undefined) {
    if (fallback === undefined) throw new UsageError(`--${name} is required`);
    return fallback;
  }
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim());
  const unit = m ? RATE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new UsageError(`--${name} must be a rate like 500kbit, 24mbit or 1gbit, not '${v}'`);
  return Math.round(Number(m[1]) * unit);
}

/**
 * Where a command reads standard input: the process's own, or the input a
 * test gives a command it runs in-process (test/helpers/cli.ts).
 */
export const stdio: { stdin: AsyncIterable<unknown> & { isTTY?: boolean } } = { stdin: process.stdin };

/** Read a secret from standard input (first line), never from argv. */
export async function readStdinLine(what: string): Promise<string> {
  if (stdio.stdin.isTTY) process.stderr.write(`${what}: `);
  const chunks: Buffer[] = [];
  for await (const c of stdio.stdin) chunks.push(c as Buffer);
  const line = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  if (!line) throw new UsageError(`${what} expected on standard input`);
  return line;
}
