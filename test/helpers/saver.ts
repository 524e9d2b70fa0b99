/**
 * A child for test/device/slots.test.ts: counts up in FILE (a
 * FileNumberStore, as an agent's counters are kept) from what the file
 * holds, one save after another, printing each value once its save has
 * resolved, until it is killed.
 */
import { FileNumberStore } from '../../runtime/node/file-numbers.js';

const file = process.argv[2]!;
const store = new FileNumberStore(file);
let n = (await store.get('n')) ?? 0;
console.log(`from ${n}`);
for (;;) {
  n++;
  // Content that changes length as it grows, so slots are written at every size.
  await store.set('n', n);
  await store.set(`k${n % 7}`, n);
  console.log(`saved ${n}`);
}
