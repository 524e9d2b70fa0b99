/**
 * What grows between two V8 heap snapshots (bench:idle --heap-snapshot
 * writes one before and one after the devices): self size and count by
 * constructor or object kind, largest growth first, divided by --per (the
 * devices that came between the two) to read as bytes per device.
 *
 *   node dist/bench/heap-diff.js BEFORE.heapsnapshot AFTER.heapsnapshot --per 1800 [--top 40]
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { per: { type: 'string', default: '1' }, top: { type: 'string', default: '40' }, help: { type: 'boolean', default: false } } });
if (values.help || positionals.length !== 2) {
  console.log('usage: node dist/bench/heap-diff.js BEFORE.heapsnapshot AFTER.heapsnapshot [--per N] [--top 40]\n  --per N   divide the growth by N (the devices that came between the snapshots)\n  --top K   print the K largest growths (default 40)');
  process.exit(values.help ? 0 : 2);
}

interface Snapshot { snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }; nodes: number[]; strings: string[] }

/** (kind, name) → [count, self bytes]. */
function tally(file: string): Map<string, [number, number]> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const f = s.snapshot.meta.node_fields;
  const width = f.length;
  const [ti, ni, si] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size')];
  const types = s.snapshot.meta.node_types[0];
  const out = new Map<string, [number, number]>();
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + ti]!]!;
    // Strings and code are grouped by kind (their names are their contents); objects by constructor.
    const name = type === 'object' || type === 'closure' || type === 'native' || type === 'hidden' || type === 'array' ? s.strings[s.nodes[i + ni]!]!.slice(0, 60) : '';
    const key = `${type}${name ? ` ${name}` : ''}`;
    const t = out.get(key) ?? [0, 0];
    t[0]++;
    t[1] += s.nodes[i + si]!;
    out.set(key, t);
  }
  return out;
}

const per = Number(values.per);
const [a, b] = [tally(positionals[0]!), tally(positionals[1]!)];
const rows = [...b].map(([k, [n, size]]) => {
  const [n0, size0] = a.get(k) ?? [0, 0];
  return { k, dn: n - n0, dsize: size - size0 };
}).sort((x, y) => y.dsize - x.dsize);
const total = rows.reduce((t, r) => t + r.dsize, 0);
console.log(`heap growth: ${(total / 1024 / 1024).toFixed(2)} MiB, ${(total / per).toFixed(0)} B per device (N=${per})`);
console.log(`${'bytes/device'.padStart(12)} ${'count/device'.padStart(12)}  kind`);
for (const r of rows.slice(0, Number(values.top))) console.log(`${(r.dsize / per).toFixed(0).padStart(12)} ${(r.dn / per).toFixed(2).padStart(12)}  ${r.k}`);
