/**
 * The web console in a real browser (issue 24): headless Chromium from
 * Debian, driven by puppeteer-core. Sign in with kagi admin login's URL,
 * watch a device come online live (server-sent events, no reload), revoke
 * it from its page and see it leave its VPN, find the revocation in the
 * audit log as the admin. Screenshots go to the test's temp dir (and to
 * KAGI_SCREENSHOTS=DIR when set, to look at them after).
 */
import t from 'tap';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHROMIUM_SKIP, chromiumPath, consoleFixture } from '../helpers/console.js';
import { addTestUser, agent, device, until, vpnWithUsers } from '../helpers/control-plane.js';
import { deadline } from '../helpers/deadline.js';

if (!chromiumPath) t.comment(CHROMIUM_SKIP);

t.test('sign in, watch a device come online, revoke it from the page and see it leave', { skip: chromiumPath ? false : CHROMIUM_SKIP }, async (t) => {
  const { default: puppeteer } = await import('puppeteer-core');
  const f = await consoleFixture(t);
  await vpnWithUsers(f.cp, 'plant', 5020, { alice: 'alice-password' });
  await addTestUser(f.cp.store, 'bob', 'bob-password');
  const bundle = await device(f.cp, 'term-1');
  const browser = await puppeteer.launch({ executablePath: chromiumPath!, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 1000 });
  const wait = { timeout: deadline(15_000) };
  const shots: string[] = [];
  const shot = async (name: string) => {
    const file = join(f.data, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    shots.push(file);
  };
  page.on('dialog', (d) => void d.accept());
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  // Sign in: the one-time URL, and the fragment is gone from the address after.
  await page.goto(await f.loginUrl(), { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#who', wait);
  t.match(await page.$eval('#who', (e) => e.textContent), /signed in as ops/);
  t.notMatch(page.url(), /login=/, 'the token left the address bar');
  const cookie = (await page.cookies()).find((c) => c.name === 'kagi_console');
  t.ok(cookie?.httpOnly, 'the session cookie is HttpOnly');
  t.equal(cookie?.sameSite, 'Strict');
  t.equal(await page.evaluate(() => document.cookie), '', 'the page script cannot read it');

  await page.waitForSelector('[data-device="term-1"][data-online="unknown"]', wait);
  await shot('1-signed-in');

  // The device comes online while we watch.
  const a = agent(bundle, f.cp.brokerUrl);
  t.teardown(() => a.stop({ leave: false }));
  await a.start();
  await a.configure();
  await a.join('alice', 'alice-password');
  await page.waitForSelector('[data-device="term-1"][data-online="online"]', wait);
  await page.waitForSelector('[data-member="plant/term-1"]', wait);
  t.equal(await page.$eval('#count-online', (e) => e.textContent), '1');
  t.match(await page.$eval('[data-vpn="plant"] [data-epoch]', (e) => e.textContent), /^\d+$/, 'the VPN shows its epoch');
  await shot('2-online');

  // Rekey and grant from the fleet page: the epoch moves on the page by itself.
  const epoch = Number(await page.$eval('[data-vpn="plant"] [data-epoch]', (e) => e.textContent));
  await page.click('button[data-rekey="plant"]');
  await page.waitForFunction((n) => Number(document.querySelector('[data-vpn="plant"] [data-epoch]')?.textContent) > n, wait, epoch);
  await page.type('input[data-user-for="plant"]', 'bob');
  await page.click('button[data-grant="plant"]');
  await page.waitForFunction(() => /grant bob to plant: done/.test(document.querySelector('#banner')?.textContent ?? ''), wait);
  t.same(await f.cp.store.grantsOf('bob'), ['plant'], 'granted from the page');

  // Its page, and the revocation from there.
  await page.click('[data-device="term-1"] a');
  await page.waitForSelector('[data-device-page="term-1"][data-state="online"]', wait);
  await page.waitForSelector('[data-membership="plant"]', wait);
  await page.waitForSelector('[data-why-step="plant liveness"][data-verdict="ok"]', wait);
  t.equal(await page.$('[data-why-step][data-marked="true"]'), null, 'its why: every step passes, nothing marked');
  await shot('3-device-page');
  await page.click('#device button[data-revoke="term-1"]');
  await page.waitForSelector('[data-device-page="term-1"][data-state="revoked"]', wait);
  await page.waitForSelector('#no-memberships', wait);
  await page.waitForSelector('[data-why-step="device"][data-verdict="fail"][data-marked="true"]', wait);
  t.match(await page.$eval('[data-why-step="device"]', (e) => e.textContent), /revoked/, 'its why now marks the device step: revoked');
  t.match(await page.$eval('#banner', (e) => e.textContent), /revoke term-1: done/);
  await shot('4-revoked');
  t.equal((await f.cp.store.getDevice('term-1'))!.revoked, true);
  t.same(await f.cp.store.membershipsOf('term-1'), [], 'it left the VPN');
  t.ok(await until(async () => !f.cp.broker!.connectedDevices().includes('term-1'), 5000), 'and the broker');

  // Back on the fleet: gone from the VPN, shown revoked; the audit log names the admin.
  await page.click('header a[href="#/"]');
  await page.waitForSelector('[data-device="term-1"][data-revoked="true"]', wait);
  t.equal(await page.$('[data-member="plant/term-1"]'), null, 'not a member any more');
  await page.click('header a[href="#/audit"]');
  await page.waitForSelector('[data-audit="device.revoke"]', wait);
  t.match(await page.$eval('[data-audit="device.revoke"]', (e) => e.textContent), /admin:ops/);
  t.same((await f.cp.store.auditLog(100)).filter((r) => r.actor === 'admin:ops').map((r) => r.op), ['vpn.rekey', 'vpn.grant', 'device.revoke'], 'each action audited as the admin');
  await shot('5-audit');
  t.same(errors, [], 'no script errors on the page');

  // Another browser (no cookie) sees the sign-in page; a spent token says why.
  const other = await browser.createBrowserContext();
  t.teardown(() => other.close());
  const p2 = await other.newPage();
  const url = await f.loginUrl();
  await p2.goto(url, { waitUntil: 'domcontentloaded' });
  await p2.waitForSelector('#who', wait);
  const p3 = await (await browser.createBrowserContext()).newPage();
  await p3.goto(url, { waitUntil: 'domcontentloaded' });
  await p3.waitForSelector('#signed-out', wait);
  t.match(await p3.$eval('#why', (e) => e.textContent), /already used/);

  for (const s of shots) t.equal(readFileSync(s).subarray(1, 4).toString(), 'PNG', `${s} is a PNG`);
  if (process.env.KAGI_SCREENSHOTS) {
    mkdirSync(process.env.KAGI_SCREENSHOTS, { recursive: true });
    for (const s of shots) copyFileSync(s, join(process.env.KAGI_SCREENSHOTS, s.slice(s.lastIndexOf('/') + 1)));
  }
  t.comment(`screenshots: ${shots.join(', ')}`);
});
