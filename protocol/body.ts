/**
 * Reading message bodies (decoded CBOR maps) with typed errors: a body that
 * lacks a field or has the wrong type is the sender's fault, a KagiError
 * 'field', dropped at the edge like any other bad input.
 */
import { KagiError } from './errors.js';

export type Body = Record<string, unknown>;

export function asBody(v: unknown): Body {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw new KagiError('field', 'body is not a map');
  return v as Body;
}

export function str(b: Body, k: string, max = 256): string {
  const v = b[k];
  if (typeof v !== 'string' || v.length > max) throw new KagiError('field', `${k} must be a string of at most ${max} chars`);
  return v;
}

export function num(b: Body, k: string): number {
  const v = b[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new KagiError('field', `${k} must be an integer`);
  return v;
}

export function bytes(b: Body, k: string, len?: number): Uint8Array {
  const v = b[k];
  if (!(v instanceof Uint8Array) || (len !== undefined && v.length !== len)) throw new KagiError('field', `${k} must be ${len ?? 'some'} bytes`);
  return new Uint8Array(v.buffer, v.byteOffset, v.length);
}

export function list(b: Body, k: string, max = 1024): unknown[] {
  const v = b[k];
  if (!Array.isArray(v) || v.length > max) throw new KagiError('field', `${k} must be a list of at most ${max}`);
  return v;
}
