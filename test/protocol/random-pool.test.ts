/** RandomPool: public random values drawn in blocks, each byte handed out once. */
import t from 'tap';
import { RandomPool } from '../../protocol/random-pool.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';

const c = nodeCrypto();

t.test('one call to the source per block; every byte handed out once, then zeroed in the pool', async (t) => {
  const blocks: Uint8Array[] = [];
  const pool = new RandomPool((n) => {
    const b = c.randomBytes(n);
    blocks.push(b);
    return b;
  }, 16);
  const a = pool.take(4);
  const block = blocks[0]!;
  t.same([...block.subarray(0, 4)], [0, 0, 0, 0], 'what was handed out is zeroed in the pool');
  const b = pool.take(12);
  t.equal(blocks.length, 1, 'sixteen bytes in two takes: one draw');
  t.same([...block], new Array(16).fill(0), 'the whole block is zeroed once handed out');
  t.notSame([...a, ...b], new Array(16).fill(0), 'what was handed out is the random bytes, not the zeros');
  pool.take(1);
  t.equal(blocks.length, 2, 'the next take draws the next block');
  t.equal(pool.take(32).length, 32, 'a take larger than a block is drawn directly');
  t.equal(blocks.length, 3, 'in a call of its own');
  const ids = new Set(Array.from({ length: 1000 }, () => pool.uint32()));
  t.ok(ids.size > 995, 'uint32s are spread (no repeats to speak of in 1,000)');
  t.ok([...ids].every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32), 'and unsigned 32-bit');
});
