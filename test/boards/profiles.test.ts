/** Board profiles: every file in board-profiles/ fits the schema; a bad one is an error naming its field. */
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseProfile, type BoardProfile } from '../../device/board-profile.js';
import { listProfiles, loadProfile } from '../../runtime/node/board-profiles.js';
import { loadRelayProfile } from '../../runtime/node/relay-ports.js';

t.test('the shipped profiles', async (t) => {
  const names = listProfiles();
  for (const n of ['node-terminal', 'node-relay-4port', 'quickjs-terminal', 'xs-terminal']) t.ok(names.includes(n), `${n} is there`);
  for (const n of names) t.equal(loadProfile(n).name, n, `${n} fits the schema`);
  const xs = loadProfile('xs-terminal');
  t.match(xs, { runtime: 'xs', mqtt: 'host', crypto: 'portable', random: 'host', storage: 'key-value' }, 'xs-terminal: everything through the host bridge');
  t.equal(xs.budget.ramBytes, 64 * 1024, 'xs-terminal: a 64 KB RAM budget');
  t.same(loadRelayProfile('node-relay-4port').ports.map((p) => p.name), ['p1', 'p2', 'p3', 'p4'], 'node-relay-4port: four TCP ports');
  // Linux hands out 32768–60999 as ephemeral source ports: a default in there collides now and then (issue 17).
  for (const n of names) for (const p of loadProfile(n).ports) if (p.kind === 'tcp') t.ok(p.port > 0 && p.port < 32768, `${n}/${p.name}: port ${p.port} is below the ephemeral range`);
  t.throws(() => loadRelayProfile('quickjs-relay-2uart'), { name: 'KagiError', message: /quickjs relay; kagi agent runs node relays/ }, 'kagi agent refuses a non-Node relay profile');
});

const good: BoardProfile = loadProfile('quickjs-terminal');
const relay = loadProfile('quickjs-relay-2uart');
const with_ = (base: object, patch: (p: Record<string, any>) => void) => {
  const p = structuredClone(base) as Record<string, any>;
  patch(p);
  return p;
};

t.test('bad profiles: the error names the field', async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ['not an object', [], /\(the whole file\) must be an object/],
    ['unknown field', with_(good, (p) => (p.flash = 1)), /flash is not a profile field/],
    ['bad runtime', with_(good, (p) => (p.runtime = 'deno')), /runtime must be one of node, quickjs, xs, not "deno"/],
    ['bad role', with_(good, (p) => (p.role = 'router')), /role must be one of terminal, relay/],
    ['budget missing', with_(good, (p) => delete p.budget), /budget must be an object/],
    ['RAM budget zero', with_(good, (p) => (p.budget.ramBytes = 0)), /budget\.ramBytes must be a positive integer, not 0/],
    ['flash budget a string', with_(good, (p) => (p.budget.flashBytes = '192k')), /budget\.flashBytes must be a positive integer, not "192k"/],
    ['ports not a list', with_(good, (p) => (p.ports = {})), /ports must be a list/],
    ['terminal with ports', with_(good, (p) => (p.ports = relay.ports)), /ports must be empty for a terminal/],
    ['relay without ports', with_(relay, (p) => (p.ports = [])), /ports must list at least one port for a relay/],
    ['uart without speed', with_(relay, (p) => delete p.ports[1].speed), /ports\[1\]\.speed must be a positive integer up to 12000000/],
    ['bad port kind', with_(relay, (p) => (p.ports[0].kind = 'usb')), /ports\[0\]\.kind must be one of tcp, uart/],
    ['tcp port out of range', with_(relay, (p) => (p.ports[0] = { name: 'p1', kind: 'tcp', host: '127.0.0.1', port: 70000 })), /ports\[0\]\.port must be a positive integer up to 65535/],
    ['repeated port', with_(relay, (p) => (p.ports[1].name = p.ports[0].name)), /ports\[1\]\.name repeats u1/],
    ['library MQTT on QuickJS', with_(good, (p) => (p.mqtt = 'library')), /mqtt must be host on quickjs/],
    ['node crypto on XS', with_(good, (p) => ((p.runtime = 'xs'), (p.crypto = 'node'))), /crypto must be portable on xs/],
    ['file storage on a board', with_(good, (p) => (p.storage = 'file')), /storage cannot be file on quickjs/],
    ['bad name', with_(good, (p) => (p.name = 'Big Board')), /name must be lower-case letters, digits and -/],
  ];
  for (const [what, json, re] of cases) {
    t.throws(() => parseProfile(json, 'x.json'), { name: 'KagiError', message: re }, what);
  }
});

t.test('loading from disk: missing, not JSON, name and file disagree', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kagi-profiles-'));
  t.teardown(() => import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true })));
  writeFileSync(join(dir, 'broken.json'), '{ "name": ');
  writeFileSync(join(dir, 'other.json'), JSON.stringify(good));
  t.throws(() => loadProfile('nosuch', dir), { message: /no board profile 'nosuch' .* known: broken, other/ }, 'a missing profile lists the known ones');
  t.throws(() => loadProfile('broken', dir), { message: /broken\.json: not JSON/ }, 'not JSON: says so');
  t.throws(() => loadProfile('other', dir), { message: /name must be other \(the file's name\), not quickjs-terminal/ }, 'name and file must agree');
  t.throws(() => loadProfile('../etc', dir), { message: /lower-case letters, digits and dashes/ }, 'no paths through the name');
});
