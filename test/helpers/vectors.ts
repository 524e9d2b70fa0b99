/**
 * Reads the published vectors from ../shared/vectors at test time (never a
 * copy), so altering any expected value there makes the suite fail.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
export { fromHex as hex, toHex } from '../../protocol/bytes.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Project root is two levels up from test/helpers (works from dist/ too). */
function root(): string {
  let d = here;
  for (let i = 0; i < 5; i++) {
    try {
      readFileSync(join(d, 'package.json'));
      return d;
    } catch {
      d = dirname(d);
    }
  }
  throw new Error('project root not found');
}

export const VECTORS_DIR = join(root(), '..', 'shared', 'vectors');

export function loadVectors<T = any>(rel: string, dir: string = VECTORS_DIR): T {
  return JSON.parse(readFileSync(join(dir, rel), 'utf8')) as T;
}

/**
 * The assertions a vector check makes. A tap test is one (each check is a
 * reported assertion); failuresOf() is another, which runs the same checks
 * in-process and lists what failed, so the tamper test needs no child runs.
 */
export interface Checks {
  equal(actual: unknown, expected: unknown, name: string): void;
  same(actual: unknown, expected: unknown, name: string): void;
  ok(value: unknown, name: string): void;
  fail(name: string): void;
  pass(name: string, extra?: { skip?: string }): void;
}

/** A named group of checks over one vectors directory: one tap subtest each. */
export interface CheckGroup {
  name: string;
  run(t: Checks): void;
}

/** Run each group as a tap subtest. */
export function runAsTests(t: { test(name: string, fn: (t: any) => Promise<void>): unknown }, groups: CheckGroup[]): void {
  for (const g of groups) void t.test(g.name, async (t) => g.run(t));
}

const show = (x: unknown) => (typeof x === 'string' ? x : JSON.stringify(x));

/** Run the groups in-process; one line per failed check, naming what it got and expected. */
export function failuresOf(groups: CheckGroup[]): string[] {
  const out: string[] = [];
  for (const g of groups) {
    const at = (name: string, got: unknown, want: unknown) => out.push(`${g.name}: ${name}: got ${show(got)}, expected ${show(want)}`);
    g.run({
      equal: (a, b, name) => { if (a !== b) at(name, a, b); },
      same: (a, b, name) => { if (JSON.stringify(a) !== JSON.stringify(b)) at(name, a, b); },
      ok: (v, name) => { if (!v) at(name, v, 'truthy'); },
      fail: (name) => out.push(`${g.name}: ${name}`),
      pass: () => {},
    });
  }
  return out;
}

/**
 * Run `ok(group, case)` over every case of a Wycheproof file; assert that
 * all numberOfTests cases were checked and list the tcIds that failed.
 */
export function eachWycheproofCase(
  t: { equal(a: unknown, b: unknown, m: string): void; same(a: unknown, b: unknown, m: string): void },
  file: { numberOfTests: number; testGroups: { tests: { tcId: number }[] }[] },
  ok: (group: any, v: any) => boolean,
): void {
  const wrong: number[] = [];
  let checked = 0;
  for (const g of file.testGroups) {
    for (const v of g.tests) {
      checked++;
      if (!ok(g, v)) wrong.push(v.tcId);
    }
  }
  t.equal(checked, file.numberOfTests, `all ${file.numberOfTests} cases checked`);
  t.same(wrong, [], 'every case gives its expected result');
}
