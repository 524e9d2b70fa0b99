/**
 * The two-slot layout of an agent's files (runtime/node/slots.ts, decision
 * 131), on real files: a save overwrites the older slot of the same file
 * (the inode stays), a crash's half-written slot is passed over for the
 * other, the plain JSON of earlier versions is read and rewritten, and
 * content that outgrows its slot gets a bigger file. A child killed while
 * it saves leaves a whole file holding every save that resolved.
 */
import t from 'tap';
import { readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { FileNumberStore } from '../../runtime/node/file-numbers.js';
import { FileSecretStore } from '../../runtime/node/file-secrets.js';
import { JsonFile } from '../../runtime/node/json-file.js';
import { encodeSlot, MIN_SLOT, readSlots, slotSizeFor } from '../../runtime/node/slots.js';
import { tempDir } from '../helpers/control-plane.js';
import { nodeArgs } from '../helpers/built.js';

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

t.test('saves after the first overwrite the older slot in place: same inode, generations alternate, the newer is read', async (t) => {
  const f = join(tempDir(t), 'dev.state');
  const s = new FileNumberStore(f);
  await s.set('tx:dev:auth', 64);
  const inode = statSync(f).ino;
  const seen: { slot: number; generation: number }[] = [];
  for (const v of [128, 192, 256]) {
    await s.set('tx:dev:auth', v);
    const got = readSlots(readFileSync(f))!;
    seen.push({ slot: got.layout.slot, generation: got.layout.generation });
    t.equal(await new FileNumberStore(f).get('tx:dev:auth'), v, `a restart reads ${v}`);
  }
  t.equal(statSync(f).ino, inode, 'no new file: every save after the first went into the same one');
  t.same(seen, [{ slot: 1, generation: 2 }, { slot: 0, generation: 3 }, { slot: 1, generation: 4 }], 'slots alternate, generations count up');
  t.equal(statSync(f).mode & 0o777, 0o600, 'still 0600');
  t.ok(readFileSync(f, 'latin1').startsWith('KAGI-SLOT 1 4096 3 '), 'slot 0 holds generation 3, readable as text');
});

t.test('a slot a crash left half written is passed over: the other slot (the save before) is read', async (t) => {
  const f = join(tempDir(t), 'dev.tickets');
  const s = new FileSecretStore(f);
  await s.set('ticket:alice', new Uint8Array([1]));
  await s.set('ticket:alice', new Uint8Array([2])); // generation 2, slot 1
  const bytes = readFileSync(f);
  const torn = Buffer.from(bytes);
  t.ok(torn.length > MIN_SLOT, 'slot 1 is written past the first page');
  torn[torn.length - 2]! ^= 0xff; // a byte of slot 1's content changed
  writeFileSync(f, torn);
  t.same([...(await new FileSecretStore(f).get('ticket:alice'))!], [1], 'the torn newer slot is not taken; the older one is');
  // And the other way round: slot 0 torn at its very start (the header), slot 1 intact.
  const headless = Buffer.from(bytes);
  headless.fill(0, 0, 20);
  writeFileSync(f, headless);
  t.same([...(await new FileSecretStore(f).get('ticket:alice'))!], [2], 'slot 1 is found without slot 0 to say where it is');
  const next = new FileSecretStore(f);
  await next.set('ticket:alice', new Uint8Array([3]));
  t.same([...(await new FileSecretStore(f).get('ticket:alice'))!], [3], 'the next save goes into the torn slot, and is read');
});

t.test('a file with no intact slot is refused with a clear error, not taken as empty', async (t) => {
  const f = join(tempDir(t), 'dev.state');
  writeFileSync(f, Buffer.alloc(5000, 0x41));
  t.throws(() => new FileNumberStore(f), /dev\.state: no intact copy of its content in it/, 'refused: its counters are not silently reset');
});

t.test('the plain JSON file of earlier versions is read, and its first save rewrites it as slots', async (t) => {
  const f = join(tempDir(t), 'dev.state');
  writeFileSync(f, JSON.stringify({ 'tx:dev:config': 64, 'era:tx:dev:config': 7 }), { mode: 0o600 });
  const s = new FileNumberStore(f);
  t.equal(await s.get('tx:dev:config'), 64, 'read as before');
  await s.set('tx:dev:config', 128);
  t.ok(readFileSync(f, 'latin1').startsWith('KAGI-SLOT 1 '), 'rewritten in the slot layout');
  t.same(JsonFile.read(f), { 'tx:dev:config': 128, 'era:tx:dev:config': 7 }, 'with everything it held');
  const inode = statSync(f).ino;
  await s.set('tx:dev:config', 192);
  t.equal(statSync(f).ino, inode, 'and the save after that is in place');
});

t.test('content that outgrows its slot is written whole with bigger slots; a deleted file is written again', async (t) => {
  const f = join(tempDir(t), 'relay.tickets');
  const s = new FileSecretStore(f);
  await s.set('small', new Uint8Array(8));
  t.equal(readSlots(readFileSync(f))!.layout.size, MIN_SLOT, 'a page to start');
  const big = new Uint8Array(3000).fill(9); // 6,000 hex digits: more than a page
  await s.set('big', big);
  const layout = readSlots(readFileSync(f))!.layout;
  t.equal(layout.size, slotSizeFor(JSON.stringify(JsonFile.read(f)).length), `a slot of ${layout.size} bytes`);
  t.ok(layout.size > MIN_SLOT, 'bigger than a page');
  t.same([...(await new FileSecretStore(f).get('big'))!], [...big], 'read back whole');
  unlinkSync(f);
  await s.set('after', new Uint8Array([1]));
  t.same(Object.keys(JsonFile.read(f)!).sort(), ['after', 'big', 'small'], 'a file deleted under the agent is written again, whole');
});

t.test('the layout alone: a slot says its size, generation and length; any changed byte fails its check', async (t) => {
  const content = Buffer.from('{"a":1}');
  const slot = encodeSlot(4096, 5, content);
  const file = new Uint8Array(4096 + slot.length);
  file.set(slot, 4096); // only slot 1
  t.same({ ...readSlots(file)!.layout }, { size: 4096, generation: 5, slot: 1 }, 'slot 1 alone is found');
  t.equal(text(readSlots(file)!.content), '{"a":1}');
  for (let i = 0; i < slot.length; i++) {
    const changed = file.slice();
    changed[4096 + i]! ^= 0x01;
    if (readSlots(changed)) {
      t.fail(`a change at byte ${i} of the slot was taken`);
      return;
    }
  }
  t.pass(`each of the slot's ${slot.length} bytes, changed, makes it unreadable`);
  t.throws(() => encodeSlot(4096, 1, new Uint8Array(4096)), RangeError, 'content that does not fit its slot is refused');
});

t.test('killed (SIGKILL) while it saves, over and over: the file is always whole and holds every save that resolved', async (t) => {
  const f = join(tempDir(t), 'dev.state');
  let resolved = 0;
  for (let round = 1; round <= 6; round++) {
    const child = spawn(process.execPath, [...nodeArgs('test/helpers/saver.ts'), f], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! });
    // Kill it after a different number of saves each round, in the middle of its run of writes.
    const killAfter = resolved + 50 + round * 37;
    for await (const line of lines) {
      const m = /^saved (\d+)$/.exec(line);
      if (m) resolved = Number(m[1]);
      if (resolved >= killAfter) {
        child.kill('SIGKILL');
        break;
      }
    }
    await once(child, 'exit');
    const held = JsonFile.read<Record<string, number>>(f);
    if (!held || !(held.n! >= resolved)) {
      t.fail(`round ${round}: the file holds ${JSON.stringify(held)} after save ${resolved} resolved`);
      return;
    }
    resolved = held.n!; // the next child counts on from what is there
  }
  t.ok(resolved >= 6 * 50, `six kills, ${resolved} saves: every read whole, none that resolved lost`);
});
