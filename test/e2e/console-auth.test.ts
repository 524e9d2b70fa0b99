/**
 * The web console's door (issue 24): sign-in only with a one-time token
 * made from an admin identity (kagi admin login), a session cookie that is
 * HttpOnly and SameSite=Strict, CSRF on every action, sessions that
 * expire, and actions that run through runAdminOp audited as the admin.
 * Plain HTTP against the real server; the browser test is console-browser.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { act, consoleFixture, openStream, signIn, tokenOf, watchUntil } from '../helpers/console.js';
import { agent, device, tempDir, until, vpnWithUsers } from '../helpers/control-plane.js';
import { createServer } from 'node:net';
import { kagiIn } from '../helpers/cli.js';
import { deadline } from '../helpers/deadline.js';
import { makeLoginToken } from '../../servers/console/login-token.js';
import { crypto } from '../helpers/control-plane.js';
import { fromHex } from '../../protocol/bytes.js';

t.test('kagi admin login: usage errors name what is wrong; the URL carries the token in its fragment', async (t) => {
  const f = await consoleFixture(t);
  const file = await f.adminFile('ops');
  const noUrl = await kagiIn(['admin', 'login', file]);
  t.equal(noUrl.code, 2);
  t.match(noUrl.stderr, /--url is required/);
  const badUrl = await kagiIn(['admin', 'login', file, '--url', 'mqtt://127.0.0.1:1883']);
  t.equal(badUrl.code, 2);
  t.match(badUrl.stderr, /http\(s\)/);
  const notAdmin = `${f.data}/not-admin.json`;
  writeFileSync(notAdmin, '{"kagi":1}');
  const bad = await kagiIn(['admin', 'login', notAdmin, '--url', f.url]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /not an admin file/);
  const help = await kagiIn(['admin', '--help']);
  t.match(help.stdout, /kagi admin login FILE --url URL/);
  const upHelp = await kagiIn(['up', '--help']);
  t.match(upHelp.stdout, /--ui-port N/);
  t.match(upHelp.stdout, /--ui-host H/);
  t.match(upHelp.stdout, /--ui-session D/);
  const url = await f.loginUrl();
  t.ok(url.startsWith(f.url), 'the console URL kagi up serves');
  t.match(url, /#login=[A-Za-z0-9_-]{60,}$/);
});

t.test('a token signs in once; forged, replayed, foreign and revoked-admin tokens are refused', async (t) => {
  const f = await consoleFixture(t);
  const token = tokenOf(await f.loginUrl());
  const ok = await signIn(f.url, token);
  t.equal(ok.status, 200);
  t.equal(ok.body.admin, 'ops');
  t.match(ok.setCookie, /HttpOnly/);
  t.match(ok.setCookie, /SameSite=Strict/);
  t.match(ok.setCookie, /Max-Age=\d+/);
  const me = await fetch(new URL('/api/session', f.url), { headers: { cookie: ok.signed!.cookie } });
  t.equal(me.status, 200);
  t.equal(((await me.json()) as { admin: string }).admin, 'ops');

  const again = await signIn(f.url, token);
  t.equal(again.status, 401, 'a token works once');
  t.match(again.body.error, /already used/);
  t.equal(again.setCookie, null);

  // One bit of the MAC flipped.
  const raw = Buffer.from(tokenOf(await f.loginUrl()), 'base64url');
  raw[raw.length - 1]! ^= 1;
  const forged = await signIn(f.url, raw.toString('base64url'));
  t.equal(forged.status, 401);
  t.match(forged.body.error, /does not verify/);

  // The admin's key, but MACed to another control plane's config key.
  const a = JSON.parse(readFileSync(await f.adminFile('ops'), 'utf8')) as { secretKey: string };
  const foreign = makeLoginToken(crypto, 'ops', fromHex(a.secretKey), crypto.generateKeyPair().publicKey);
  t.equal((await signIn(f.url, foreign)).status, 401);
  // Made long ago.
  const old = makeLoginToken(crypto, 'ops', fromHex(a.secretKey), f.cp.keys.config.publicKey, Date.now() - 10 * 60_000);
  t.match((await signIn(f.url, old)).body.error, /expired/);
  t.match((await signIn(f.url, 'not a token!')).body.error, /malformed/);

  // A revoked admin: its token is refused, and its live session ends.
  const second = tokenOf(await f.loginUrl('second'));
  const s2 = await signIn(f.url, tokenOf(await f.loginUrl('second')));
  t.equal(s2.status, 200);
  const stream = await openStream(f.url, s2.signed!.cookie);
  t.teardown(() => stream.close());
  t.match(await stream.readUntil(/event: fleet\n/, deadline(5000)), /event: fleet\n/, 'its page is watching');
  t.equal((await kagiIn(['admin', 'revoke', 'second', '--data', f.data])).code, 0);
  t.match(await stream.readUntil(/event: expired\n/, deadline(10_000)), /event: expired\n/, "a revoked admin's live stream ends");
  t.match((await signIn(f.url, second)).body.error, /not an admin/);
  t.equal((await fetch(new URL('/api/session', f.url), { headers: { cookie: s2.signed!.cookie } })).status, 401, 'a revoked admin is signed out');
  t.ok(f.lines.some((l) => /console: sign-in refused: token of ops was already used/.test(l)), 'refusals are logged with their reason');
});

t.test('actions need a session and its CSRF token; they run as the admin, audited', async (t) => {
  const f = await consoleFixture(t);
  await vpnWithUsers(f.cp, 'plant', 5020, { alice: 'alice-password', bob: 'bob-password' });
  await device(f.cp, 'term-1');
  const { signed } = await signIn(f.url, tokenOf(await f.loginUrl()));
  const revoke = { id: 'term-1' };

  const none = await act(f.url, 'device.revoke', revoke);
  t.equal(none.status, 401, 'no session');
  const badCookie = await act(f.url, 'device.revoke', revoke, { cookie: 'kagi_console=guess', csrf: signed!.csrf });
  t.equal(badCookie.status, 401, 'an unknown session');
  const noCsrf = await act(f.url, 'device.revoke', revoke, { cookie: signed!.cookie });
  t.equal(noCsrf.status, 403, 'no CSRF token');
  t.match(noCsrf.body.error, /CSRF/);
  const wrongCsrf = await act(f.url, 'device.revoke', revoke, { cookie: signed!.cookie, csrf: `${signed!.csrf.slice(0, -1)}A` === signed!.csrf ? `${signed!.csrf.slice(0, -1)}B` : `${signed!.csrf.slice(0, -1)}A` });
  t.equal(wrongCsrf.status, 403, 'a wrong CSRF token');
  const crossSite = await act(f.url, 'device.revoke', revoke, { ...signed!, origin: 'http://evil.example' });
  t.equal(crossSite.status, 403, 'another origin');
  t.equal((await f.cp.store.getDevice('term-1'))!.revoked, false, 'nothing refused changed anything');
  t.equal((await f.cp.store.auditLog(100)).filter((r) => r.actor === 'admin:ops').length, 0);

  const notAction = await act(f.url, 'user.add', { id: 'mallory', password: 'mallory-password' }, signed!);
  t.equal(notAction.status, 400, 'only the console actions');
  t.equal(await f.cp.store.getUser('mallory'), undefined);
  const noSuch = await act(f.url, 'vpn.grant', { vpn: 'plant', user: 'nobody' }, signed!);
  t.equal(noSuch.status, 409, "the operation's own refusal comes back");

  t.equal((await act(f.url, 'vpn.revoke', { vpn: 'plant', user: 'bob' }, signed!)).status, 200);
  t.same(await f.cp.store.grantsOf('bob'), []);
  t.equal((await act(f.url, 'vpn.grant', { vpn: 'plant', user: 'bob' }, signed!)).status, 200);
  t.same(await f.cp.store.grantsOf('bob'), ['plant']);
  t.equal((await act(f.url, 'vpn.rekey', { id: 'plant' }, signed!)).status, 200);
  t.ok((await f.cp.store.getVpn('plant'))!.rekeyRequestedAt > 0);
  t.equal((await act(f.url, 'device.revoke', revoke, signed!)).status, 200);
  t.equal((await f.cp.store.getDevice('term-1'))!.revoked, true);
  const audit = (await f.cp.store.auditLog(100)).filter((r) => r.actor === 'admin:ops').map((r) => `${r.op} ${r.detail}`);
  t.same(audit, ['vpn.revoke {"vpn":"plant","user":"bob"}', 'vpn.grant {"vpn":"plant","user":"bob"}', 'vpn.rekey {"id":"plant"}', 'device.revoke {"id":"term-1"}']);

  // Signing out needs the CSRF token too; after it the cookie is worth nothing.
  const logout = (headers: Record<string, string>) => fetch(new URL('/api/logout', f.url), { method: 'POST', headers: { 'content-type': 'application/json', cookie: signed!.cookie, ...headers }, body: '{}' });
  t.equal((await logout({})).status, 403);
  const out = await logout({ 'x-csrf-token': signed!.csrf });
  t.equal(out.status, 200);
  t.match(out.headers.get('set-cookie'), /kagi_console=;.*Max-Age=0/);
  t.equal((await act(f.url, 'vpn.rekey', { id: 'plant' }, signed!)).status, 401, 'signed out');
});

t.test('sessions expire: requests and the live stream are refused after', async (t) => {
  const sessionMs = deadline(2000);
  const f = await consoleFixture(t, { sessionMs });
  await device(f.cp, 'term-1');
  const { signed } = await signIn(f.url, tokenOf(await f.loginUrl()));
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const stream = await fetch(new URL('/api/events', f.url), { headers: { cookie: signed!.cookie }, signal: ac.signal });
  t.equal(stream.status, 200);
  t.match(stream.headers.get('content-type'), /text\/event-stream/);
  // Read the stream until it ends: the fleet first, and 'expired' last.
  let text = '';
  const dec = new TextDecoder();
  for await (const chunk of stream.body as AsyncIterable<Uint8Array>) text += dec.decode(chunk, { stream: true });
  t.match(text, /event: fleet\ndata: \{"status":\{"devices":\[\{"id":"term-1"/, 'the fleet came over the stream');
  t.match(text, /event: expired\n/, 'the stream says the session expired, then ends');
  t.ok(await until(async () => (await fetch(new URL('/api/session', f.url), { headers: { cookie: signed!.cookie } })).status === 401, deadline(3000)), 'the session is gone');
  const late = await act(f.url, 'device.revoke', { id: 'term-1' }, signed!);
  t.equal(late.status, 401, 'an expired session cannot act');
  t.equal((await f.cp.store.getDevice('term-1'))!.revoked, false);
  const events = await fetch(new URL('/api/events', f.url), { headers: { cookie: signed!.cookie } });
  t.equal(events.status, 401, 'nor watch');
});

t.test('the page and its libraries are served with a CSP; nothing else is a file', async (t) => {
  const f = await consoleFixture(t);
  const page = await fetch(f.url);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-security-policy'), /script-src 'self' 'sha256-/);
  const html = await page.text();
  t.match(html, /<script type="importmap">/);
  for (const p of ['/app.js', '/vendor/preact.mjs', '/vendor/htm-preact.mjs', '/vendor/uplot.mjs']) {
    const r = await fetch(new URL(p, f.url));
    t.equal(r.status, 200, p);
    t.match(r.headers.get('content-type'), /javascript/, p);
  }
  for (const p of ['/../package.json', '/vendor/../../keys.json', '/servers/console/page/app.js', '/api/device/x']) t.not((await fetch(new URL(p, f.url))).status, 200, p);
});

t.test('the live stream lists a refusal as it happens, with the rates', async (t) => {
  const f = await consoleFixture(t);
  await vpnWithUsers(f.cp, 'plant', 5020, { alice: 'alice-password' });
  const a = agent(await device(f.cp, 'term-1'), f.cp.brokerUrl, { attempts: 1 });
  t.teardown(() => a.stop({ leave: false }));
  await a.start();
  await a.configure();
  const { signed } = await signIn(f.url, tokenOf(await f.loginUrl()));
  const before = await watchUntil(f.url, signed!.cookie, /event: fleet\n/, deadline(5000));
  t.match(before, /"recent":\[\]/, 'nothing refused yet');
  t.match(before, /event: rates\ndata: \{"series":\["joins\/s","evictions\/s","frames\/s","connected","join ms","rekey ms","poll round ms"\]/, 'rates, and the histograms as means');
  await t.rejects(a.join('alice', 'not-her-password'));
  const after = await watchUntil(f.url, signed!.cookie, /"kind":"refusal"/, deadline(10_000));
  t.match(after, /"kind":"refusal","subject":"user.join","text":"refused user.join: wrong user id or password \(wrong password for alice from term-1\)"/);
});

t.test('kagi up: --ui-session needs --ui-port; a console port in use stops it with one line', async (t) => {
  const r = await kagiIn(['up', '--ui-session', '5m']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--ui-session needs --ui-port/);
  const long = await kagiIn(['up', '--ui-port', '0', '--ui-session', '30d']);
  t.equal(long.code, 2);
  t.match(long.stderr, /--ui-session must be 1s\.\.7d/);
  const bad = await kagiIn(['up', '--ui-port', 'x']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--ui-port must be an integer/);
  const busy = createServer();
  await new Promise<void>((res) => busy.listen(0, '127.0.0.1', res));
  t.teardown(() => new Promise<void>((res) => busy.close(() => res())));
  const port = (busy.address() as { port: number }).port;
  const data = tempDir(t);
  const inUse = await kagiIn(['up', '--data', data, '--port', '0', '--ui-port', String(port), '--log-format', 'text']);
  t.equal(inUse.code, 1);
  t.match(inUse.stderr, new RegExp(`kagi up: console port ${port} on 127.0.0.1 is in use: choose another with --ui-port N`));
});

t.test('the device page data: row, memberships, liveness, relay ports; unknown ids and admins are not devices', async (t) => {
  const f = await consoleFixture(t);
  await vpnWithUsers(f.cp, 'plant', 5020, { alice: 'alice-password' });
  await device(f.cp, 'relay-1', 'relay');
  await kagiIn(['device', 'add', 'plc-1', '--mac', '02:00:00:00:99:01', '--kind', 'plaintext', '--relay', 'relay-1', '--port', 'p2', '--out', `${f.data}/plc-1.json`, '--data', f.data]);
  const a = agent(await device(f.cp, 'term-1'), f.cp.brokerUrl);
  t.teardown(() => a.stop({ leave: false }));
  await a.start();
  await a.configure();
  await a.join('alice', 'alice-password');
  const { signed } = await signIn(f.url, tokenOf(await f.loginUrl()));
  const get = async (id: string) => {
    const r = await fetch(new URL(`/api/device/${encodeURIComponent(id)}`, f.url), { headers: { cookie: signed!.cookie } });
    return { status: r.status, body: (await r.json()) as Record<string, any> };
  };
  t.equal((await fetch(new URL('/api/device/term-1', f.url))).status, 401, 'signed in only');
  const term = await get('term-1');
  t.equal(term.status, 200);
  t.match(term.body, { id: 'term-1', kind: 'terminal', revoked: false, joinedAs: 'alice', liveness: { online: true, communicating: true, missedPolls: 0 }, relayPorts: [] });
  t.match(term.body.memberships, [{ vpn: 'plant', user: 'alice', epoch: Number, current: Number }]);
  t.equal(term.body.memberships[0].epoch, term.body.memberships[0].current, 'it holds the current epoch');
  t.match(term.body.why, [{ step: 'device', verdict: 'ok' }], 'the why steps, the device first');
  t.ok(term.body.why.some((s: { step: string; verdict: string }) => s.step === 'plant liveness' && s.verdict === 'ok'), 'and its VPN steps, named by VPN');
  t.notOk(term.body.why.some((s: { marked: boolean }) => s.marked), 'nothing marked for a joined, live member');
  // With kagi up's own settings, as kagi why --remote: the drivers it runs, not every one it could.
  const network = term.body.why.find((s: { step: string }) => s.step === 'plant network') as { evidence: string } | undefined;
  t.match(network?.evidence, /^broker ACL: /, 'the network step names the drivers kagi up runs (the embedded broker\'s ACL)');
  t.notMatch(network?.evidence, /nftables|dynsec/, 'and not those it does not run');
  const plc = await get('plc-1');
  t.ok(plc.body.why.some((s: { marked: boolean; verdict: string }) => s.marked && s.verdict === 'fail'), 'a plaintext terminal that never joined: the first failing step is marked');
  t.same(plc.body.relayPorts, [{ relay: 'relay-1', port: 'p2', terminal: 'plc-1', state: 'RESTRICTED' }], "a plaintext terminal's port, restricted without a key");
  t.equal(plc.body.liveness.online, null, 'never seen on a broker');
  t.same((await get('relay-1')).body.relayPorts, plc.body.relayPorts, 'a relay lists the ports it serves');
  t.equal((await get('nobody')).status, 404);
  t.equal((await get('ops')).status, 404, 'an admin is not a device');
});

t.test('the live stream lists an eviction as it happens', async (t) => {
  const f = await consoleFixture(t, { liveness: { pollIntervalMs: 300, evictAfter: 2 } });
  await vpnWithUsers(f.cp, 'plant', 5020, { alice: 'alice-password' });
  const a = agent(await device(f.cp, 'term-1'), f.cp.brokerUrl);
  await a.start();
  await a.configure();
  await a.join('alice', 'alice-password');
  const { signed } = await signIn(f.url, tokenOf(await f.loginUrl()));
  const stream = await openStream(f.url, signed!.cookie);
  t.teardown(() => stream.close());
  t.match(await stream.readUntil(/"recent":\[\]/, deadline(5000)), /"members":\[\{"device":"term-1"/, 'a member, nothing evicted yet');
  await a.stop({ leave: false }); // gone without a word: it answers no more polls
  const text = await stream.readUntil(/"kind":"eviction"/, deadline(15_000));
  t.match(text, /"kind":"eviction","subject":"term-1","text":"term-1 evicted from plant \(/);
});
