/**
 * Resumption tickets through the CLI (issue 21): the first join with the
 * password leaves a ticket in FILE.tickets and no password anywhere; a
 * restarted agent re-joins with --user alone; a copied (retired) ticket
 * presented again revokes the pair; a changed password and an expired
 * ticket are refused with their own reasons; the password path still works
 * after each.
 */
import t from 'tap';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../helpers/ports.js';
import { kagi, kagiIn, kagiSpawn, kagiUp, stopChild, watch } from '../helpers/cli.js';
import { tempDir } from '../helpers/control-plane.js';
import { parseContent } from '../../runtime/node/json-file.js';

const PASSWORD = 'alice-password';
/** alice's ticket in FILE.tickets (or in a copy of its bytes taken earlier). */
const ticketIn = (file: string, copy?: string) => parseContent<Record<string, string>>(copy === undefined ? readFileSync(file) : Buffer.from(copy, 'utf8')).value['ticket:alice'];

function ok(t: { equal(a: unknown, b: unknown, m: string): unknown }, r: { code: number | null; stdout: string; stderr: string }, what: string) {
  t.equal(r.code, 0, `${what}${r.code ? `: ${r.stderr}` : ''}`);
}

/** Start `kagi agent`; resolves with the child and its watch. */
function startAgent(file: string, url: string, extra: string[], password?: string) {
  const child = kagiSpawn(['agent', file, '--broker', url, '--user', 'alice', ...extra, ...(password !== undefined ? ['--password-stdin'] : [])]);
  child.stdin!.end(password !== undefined ? `${password}\n` : '');
  return { child, out: watch(child) };
}

/** Wait until an agent exits; its exit code and everything it said. */
function exited(child: ReturnType<typeof kagiSpawn>): Promise<{ code: number | null; text: string }> {
  let text = '';
  child.stdout!.on('data', (d) => (text += d));
  child.stderr!.on('data', (d) => (text += d));
  return new Promise((r) => child.once('exit', (code) => r({ code, text })));
}

/** A data dir made with the admin commands (in-process): device term (its file), user alice, VPN plant granted to her. */
async function site(t: Parameters<typeof tempDir>[0] & { equal(a: unknown, b: unknown, m: string): unknown }, mac: string) {
  const data = tempDir(t);
  const file = join(data, 'term.json');
  ok(t, await kagiIn(['init', '--data', data]), 'init');
  ok(t, await kagiIn(['device', 'add', 'term', '--mac', mac, '--out', file, '--data', data]), 'device add');
  ok(t, await kagiIn(['user', 'add', 'alice', '--password-stdin', '--data', data], `${PASSWORD}\n`), 'user add');
  ok(t, await kagiIn(['vpn', 'add', 'plant', '--protocol', 'tcp', '--port', '5020', '--data', data]), 'vpn add');
  ok(t, await kagiIn(['vpn', 'grant', 'plant', 'alice', '--data', data]), 'grant');
  return { data, file };
}

t.test('tickets through the CLI', async (t) => {
  const { data, file } = await site(t, '02:00:00:00:21:01');

  const port = await freePort();
  const up = await kagiUp(['--port', String(port), '--data', data]);
  t.teardown(() => stopChild(up));
  const url = up.brokerUrl;

  const noTicket = kagi(['agent', file, '--broker', url, '--user', 'alice']);
  t.not(noTicket.code, 0, 'without a ticket, --user alone is refused');
  t.match(noTicket.stderr, /no ticket for alice .*--password-stdin/, 'and says the first join needs the password');

  let a = startAgent(file, url, [], PASSWORD);
  await a.out.until(/joined plant/);
  await stopChild(a.child);
  const tickets = `${file}.tickets`;
  t.equal(statSync(tickets).mode & 0o777, 0o600, 'FILE.tickets is 0600');
  const held = readFileSync(tickets, 'utf8');
  const pwHex = Buffer.from(PASSWORD).toString('hex');
  for (const f of [tickets, `${file}.state`, file]) {
    const text = readFileSync(f, 'utf8');
    t.notOk(text.includes(PASSWORD) || text.includes(pwHex), `${f.slice(data.length + 1)} holds no password`);
  }

  // A restart with no password: the ticket.
  a = startAgent(file, url, []);
  await a.out.until(/joined plant/);
  await stopChild(a.child);
  const second = readFileSync(tickets, 'utf8');
  const successor = ticketIn(tickets);
  t.not(successor, ticketIn(tickets, held), 'the re-join rotated the ticket');
  t.notMatch(a.out.text(), /rejoined|granted plant/, 'one join per start: a device that left at its last stop is owed no grant notice');
  t.match(a.out.text(), /joining as alice on its ticket: no config request/, 'it says it re-joins on its ticket');
  t.notMatch(a.out.text(), /state: configured/, 'and goes from unconfigured to joining: no config request before the join (decision 122)');
  const status = JSON.parse(kagi(['status', '--json', '--data', data]).stdout) as { devices: { id: string; ticket: { live: boolean; lastUsed: string | null } | null }[] };
  const term = status.devices.find((d) => d.id === 'term')!;
  t.equal(term.ticket?.live, true, 'status: a live ticket');
  t.ok(term.ticket?.lastUsed && Date.parse(term.ticket.lastUsed) > 0, 'status: when it was last used');
  t.match(kagi(['status', '--data', data]).stdout, /term .*ticket live \(last used/, 'and in the table');

  // The reply that carried the new ticket lost: the previous one, shown
  // again while its successor is unused, still gets in (once).
  writeFileSync(tickets, held, { mode: 0o600 });
  a = startAgent(file, url, []);
  await a.out.until(/joined plant/);
  await stopChild(a.child);
  t.pass('a lost reply does not lock the device out');
  t.not(ticketIn(tickets), successor, 'the unused successor was rotated in its place');

  // A copy of a ticket whose successor was used since: a clone. The pair's tickets are revoked.
  a = startAgent(file, url, []);
  await a.out.until(/joined plant/);
  await stopChild(a.child);
  writeFileSync(tickets, second, { mode: 0o600 });
  const reused = startAgent(file, url, []);
  const r1 = await exited(reused.child);
  t.not(r1.code, 0, 'a retired ticket presented again: refused, and without a password the agent stops');
  t.match(r1.text, /was used before.*revoked/, 'the refusal says the tickets are revoked');
  t.match(r1.text, /password is needed/, 'and that the password is needed');
  const after = JSON.parse(kagi(['status', '--json', '--data', data]).stdout) as typeof status;
  t.equal(after.devices.find((d) => d.id === 'term')!.ticket, null, 'the pair holds no ticket any more');

  // The password path still works, and makes a new family.
  a = startAgent(file, url, [], PASSWORD);
  await a.out.until(/joined plant/);
  await stopChild(a.child);

  // A changed password retires the user's tickets.
  ok(t, kagi(['user', 'passwd', 'alice', '--password-stdin', '--data', data], 'alice-new-password\n'), 'user passwd');
  const changed = startAgent(file, url, []);
  const r2 = await exited(changed.child);
  t.not(r2.code, 0, 'after passwd the old ticket is refused');
  t.match(r2.text, /no ticket [0-9a-f]{32}/, 'as unknown (retired with the old password)');
  const old = startAgent(file, url, [], PASSWORD);
  const r3 = await exited(old.child);
  t.match(r3.text, /wrong user id or password/, 'the old password is refused');
  a = startAgent(file, url, [], 'alice-new-password');
  await a.out.until(/joined plant/);
  await stopChild(a.child);
});

t.test('an expired ticket is refused with its own reason; the password still works', async (t) => {
  const { data, file } = await site(t, '02:00:00:00:21:02');
  const up = await kagiUp(['--port', String(await freePort()), '--data', data, '--ticket-lifetime', '1ms']);
  t.teardown(() => stopChild(up));
  let a = startAgent(file, up.brokerUrl, [], PASSWORD);
  await a.out.until(/joined plant/);
  await stopChild(a.child);
  const expired = startAgent(file, up.brokerUrl, []);
  const r = await exited(expired.child);
  t.not(r.code, 0, 'refused');
  t.match(r.text, /ticket [0-9a-f]{32} of term expired/, 'because it expired');
  a = startAgent(file, up.brokerUrl, [], PASSWORD);
  await a.out.until(/joined plant/);
  await stopChild(a.child);
});
