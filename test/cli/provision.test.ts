/**
 * kagi provision --csv: a 500-row CSV with 3 bad rows provisions 497 and
 * reports the 3 by line; a second run changes nothing; a run cut off after
 * writing a file resumes from it; conflicts are reported, not overwritten.
 */
import t from 'tap';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kagi } from '../helpers/cli.js';
import { crypto, kagiDataDir, tempDir } from '../helpers/control-plane.js';
import { SqliteStore } from '../../servers/store/sqlite.js';
import { loadServiceKeys, publicKeys } from '../../servers/identity.js';
import { storeRunner } from '../../servers/admin-ops.js';
import { csvFields, parseDeviceCsv, provisionRow } from '../../servers/provision.js';
import { PNG } from 'pngjs';
import jsQRModule from 'jsqr';

// jsqr is CommonJS: Node's default import is the function its typings call .default.
const jsQR = jsQRModule as unknown as typeof jsQRModule.default;

const mac = (i: number) => `02:00:00:01:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;

t.test('500 rows, 3 bad: 497 provisioned, the 3 reported by line; a second run changes nothing', async (t) => {
  const data = kagiDataDir(t);
  const out = join(data, 'devices');
  const lines = ['id,mac,kind,profile'];
  for (let i = 0; i < 500; i++) lines.push(`dev-${i},${mac(i)},${i % 50 === 0 ? 'relay' : 'terminal'},${i % 2 ? 'quickjs-terminal' : ''}`);
  lines[101] = 'dev-100,not-a-mac,terminal,'; // line 102
  lines[251] = 'dev-250,02:00:00:01:00:fa,toaster,'; // line 252
  lines[401] = 'dev-400,02:00:00:01:01:90,terminal,no-such-board'; // line 402
  const csv = join(data, 'devices.csv');
  writeFileSync(csv, `${lines.join('\n')}\n`);

  const first = kagi(['provision', '--csv', csv, '--out', out, '--data', data]);
  t.equal(first.code, 1, 'exit 1: some rows are not done');
  t.match(first.stdout, /497 provisioned, 0 already done, 3 row\(s\) not done/, 'the summary');
  t.match(first.stdout, new RegExp(`${csv.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:102: MAC 'not-a-mac' must look like`), 'line 102 reported: bad MAC');
  t.match(first.stdout, /:252: kind 'toaster' must be terminal, relay or external/, 'line 252 reported: bad kind');
  t.match(first.stdout, /:402: no board profile 'no-such-board'/, 'line 402 reported: unknown profile');
  t.match(first.stderr, /provision: 497\/497/, 'progress reported');
  const files = readdirSync(out).filter((f) => f.endsWith('.json'));
  t.equal(files.length, 497, '497 device files');
  t.equal(statSync(join(out, 'dev-1.json')).mode & 0o777, 0o600, 'written 0600');
  t.match(JSON.parse(readFileSync(join(out, 'dev-1.json'), 'utf8')), { id: 'dev-1', mac: mac(1), kind: 'terminal', profile: 'quickjs-terminal' }, 'a device file as kagi device add writes it, with its profile');
  const s = new SqliteStore(data);
  t.equal((await s.listDevices()).length, 497, '497 devices registered');
  t.equal((await s.getDevice('dev-50'))!.kind, 'relay', 'kinds kept');
  await s.close();

  const mtime = statSync(join(out, 'dev-7.json')).mtimeMs;
  const again = kagi(['provision', '--csv', csv, '--out', out, '--data', data]);
  t.match(again.stdout, /0 provisioned, 497 already done, 3 row\(s\) not done/, 'the second run: nothing new, the same 3 rows');
  t.equal(statSync(join(out, 'dev-7.json')).mtimeMs, mtime, 'files untouched');
  const s2 = new SqliteStore(data);
  t.equal((await s2.listDevices()).length, 497, 'the store unchanged');
  await s2.close();

  const st = kagi(['provision', '--out', out, '--data', data]);
  t.equal(st.code, 2, 'no --csv: usage error');
  t.equal(kagi(['provision', '--csv', join(data, 'missing.csv'), '--out', out, '--data', data]).code, 2, 'a missing CSV: usage error');
});

t.test('resume and conflicts', async (t) => {
  const data = tempDir(t);
  const out = tempDir(t);
  const keys = loadServiceKeys(data, crypto);
  const row = { line: 2, id: 'r1', mac: '02:00:00:02:00:01', kind: 'terminal' as const };
  // A run cut off after writing the file: the file exists, the store has nothing.
  const services = async () => publicKeys(keys);
  const elsewhere = new SqliteStore(tempDir(t));
  t.equal(await provisionRow(storeRunner(elsewhere, 'test', services), crypto, row, out, 'mqtt://x:1883'), 'made', 'made (in a store we then lose)');
  await elsewhere.close();
  const store = new SqliteStore(data);
  t.teardown(() => store.close());
  const s = storeRunner(store, 'test', services);
  t.equal(await provisionRow(s, crypto, row, out, 'mqtt://x:1883'), 'resumed', 'resumed from the file');
  const saved = JSON.parse(readFileSync(join(out, 'r1.json'), 'utf8')) as { secretKey: string };
  t.same([...(await store.getDevice('r1'))!.publicKey], [...crypto.publicKey(Buffer.from(saved.secretKey, 'hex'))], 'with the key the file holds');
  t.equal(await provisionRow(s, crypto, row, out, 'mqtt://x:1883'), 'done', 'then done');
  await t.rejects(provisionRow(s, crypto, { ...row, mac: '02:00:00:02:00:99' }, out, 'mqtt://x:1883'), /exists for another device/, 'a file for another MAC is not overwritten');
  await t.rejects(provisionRow(s, crypto, { ...row, id: 'r2', line: 3, mac: '02:00:00:02:00:02' }, tempDir(t), 'mqtt://x:1883').then(() => provisionRow(s, crypto, { ...row, id: 'r2', mac: '02:00:00:02:00:98' }, tempDir(t), 'mqtt://x:1883')), /already registered with MAC 02:00:00:02:00:02/, 'a registered id with another MAC is not touched');
  const dupOut = tempDir(t);
  await t.rejects(provisionRow(s, crypto, { ...row, id: 'r3' }, dupOut, 'mqtt://x:1883'), /MAC 02:00:00:02:00:01 is already registered to r1/, 'a MAC another device has is refused');
  t.equal(await provisionRow(s, crypto, { ...row, id: 'r3' }, dupOut, 'mqtt://x:1883', true), 'resumed', 'unless duplicates are allowed (the refused run left its file: resumed)');
});

t.test('CSV parsing', async (t) => {
  t.same(csvFields('a, "b,c" ,"d""e",'), ['a', 'b,c', 'd"e', ''], 'quotes, commas and escaped quotes');
  const r = parseDeviceCsv('# fleet\nMAC,ID\n02:00:00:00:00:01,x1\n\n02:00:00:00:00:02,x1\n02:00:00:00:00:03,auth\n1,2,3\n');
  t.same(r.rows, [{ line: 3, id: 'x1', mac: '02:00:00:00:00:01', kind: 'terminal' }], 'columns in any order, default kind');
  t.same(r.errors.map((e) => [e.line, e.message]), [[5, "id 'x1' repeats line 3"], [6, "id 'auth' is reserved for a service"], [7, '3 fields, the header has 2']], 'repeats, reserved ids and extra fields by line');
  t.match(parseDeviceCsv('name,address\n').errors, [{ line: 1, message: /the header must name id and mac/ }], 'a header without id and mac');
});

t.test('with a board profile: a flashable bundle per device and a QR code of id and fingerprint', async (t) => {
  const data = kagiDataDir(t);
  const out = join(data, 'devices');
  const csv = join(data, 'boards.csv');
  writeFileSync(csv, 'id,mac,profile\nqb-1,02:00:00:03:00:01,quickjs-terminal\nqb-2,02:00:00:03:00:02,xs-terminal\nnb-1,02:00:00:03:00:03,node-terminal\nplain,02:00:00:03:00:04,\n');
  const r = kagi(['provision', '--csv', csv, '--out', out, '--data', data]);
  t.equal(r.code, 0, `all rows done (${r.stdout.trim()})`);
  for (const id of ['qb-1', 'qb-2']) {
    const js = readFileSync(join(out, `${id}.agent.js`), 'utf8');
    t.ok(js.includes(`id:"${id}"`) || js.includes(`"id":"${id}"`), `${id}: its bundle has the device baked in`);
    t.notOk(js.includes('#<null>#'), `${id}: no placeholder left`);
    t.equal(statSync(join(out, `${id}.agent.js`)).mode & 0o777, 0o600, `${id}: bundle written 0600 (it holds the key)`);
  }
  t.notOk(readdirSync(out).includes('nb-1.agent.js'), 'a Node board takes its device file on the command line: no bundle');
  t.notOk(readdirSync(out).includes('plain.png'), 'a row without a profile gets no board files');

  const file = JSON.parse(readFileSync(join(out, 'qb-1.json'), 'utf8')) as { secretKey: string };
  const fp = Buffer.from(crypto.sha256(crypto.publicKey(Buffer.from(file.secretKey, 'hex')))).subarray(0, 16).toString('hex');
  const png = PNG.sync.read(readFileSync(join(out, 'qb-1.png')));
  const qr = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  t.equal(qr?.data, `kagi:qb-1:${fp}`, 'the PNG QR code decodes to the device id and its key fingerprint');

  const card = kagi(['device', 'card', join(out, 'qb-1.json'), '--png', join(data, 'card.png')]);
  t.equal(card.code, 0, 'kagi device card');
  t.match(card.stdout, new RegExp(`fingerprint ${fp.replace(/(.{4})(?!$)/g, '$1 ')}`), 'prints the fingerprint in groups of four');
  t.match(card.stdout, /[▀▄█]/, 'and a QR code for the terminal');
  const again = PNG.sync.read(readFileSync(join(data, 'card.png')));
  t.equal(jsQR(new Uint8ClampedArray(again.data), again.width, again.height)?.data, `kagi:qb-1:${fp}`, '--png writes the same QR code');
  t.equal(kagi(['device', 'card', join(data, 'nope.json')]).code, 2, 'a missing file is a usage error');
});
