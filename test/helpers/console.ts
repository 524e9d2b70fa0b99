/**
 * The web console in tests: a control plane with `console` on a free port,
 * an admin made by the real `kagi admin add`, its one-time URL from the
 * real `kagi admin login`, and plain-HTTP helpers that keep the cookie.
 */
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../servers/control-plane.js';
import { crypto, tempDir } from './control-plane.js';
import { deadline } from './deadline.js';
import { kagiIn } from './cli.js';

/** Debian's Chromium (apt-get install -y chromium), or KAGI_CHROMIUM; undefined when neither runs here. */
export const chromiumPath: string | undefined = (() => {
  for (const p of [process.env.KAGI_CHROMIUM, 'chromium', 'chromium-browser'].filter((x): x is string => !!x)) {
    const r = spawnSync('sh', ['-c', `command -v "$0"`, p], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return undefined;
})();
export const CHROMIUM_SKIP = 'SKIPPED: needs Chromium to drive the console in a real browser (apt-get install -y chromium; or set KAGI_CHROMIUM)';

export interface ConsoleFixture {
  cp: ControlPlane;
  data: string;
  url: string;
  /** A one-time sign-in URL for `admin` (default ops), from kagi admin login. */
  loginUrl(admin?: string): Promise<string>;
  adminFile(admin: string): Promise<string>;
  lines: string[];
}

export async function consoleFixture(t: { teardown(fn: () => unknown): void }, o: { sessionMs?: number; liveness?: ControlPlaneOptions['liveness'] } = {}): Promise<ConsoleFixture> {
  const data = tempDir(t, 'kagi-console-');
  const lines: string[] = [];
  const cp = await startControlPlane({
    dataDir: data, crypto, port: 0, timeoutMs: deadline(5000),
    ...(o.liveness ? { liveness: o.liveness } : {}),
    console: { host: '127.0.0.1', port: 0, ...(o.sessionMs ? { sessionMs: o.sessionMs } : {}) },
    log: (level, msg) => lines.push(`${level}: ${msg}`),
  });
  t.teardown(() => cp.close());
  const files = new Map<string, string>();
  const adminFile = async (admin: string) => {
    if (!files.has(admin)) {
      const file = join(data, `${admin}.admin.json`);
      const r = await kagiIn(['admin', 'add', admin, '--out', file, '--data', data]);
      if (r.code !== 0) throw new Error(`kagi admin add: ${r.stderr}`);
      files.set(admin, file);
    }
    return files.get(admin)!;
  };
  const loginUrl = async (admin = 'ops') => {
    const r = await kagiIn(['admin', 'login', await adminFile(admin), '--url', cp.consoleUrl!]);
    if (r.code !== 0) throw new Error(`kagi admin login: ${r.stderr}`);
    return r.stdout.trim();
  };
  return { cp, data, url: cp.consoleUrl!, loginUrl, adminFile, lines };
}

/** The token in a sign-in URL's fragment. */
export const tokenOf = (loginUrl: string): string => new URL(loginUrl).hash.replace(/^#login=/, '');

export interface Signed {
  cookie: string;
  csrf: string;
  admin: string;
}

/** POST /api/login as the page does; the cookie and CSRF token of the session. */
export async function signIn(base: string, token: string): Promise<{ status: number; body: Record<string, unknown>; setCookie: string | null; signed?: Signed }> {
  const r = await fetch(new URL('/api/login', base), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  const body = (await r.json()) as Record<string, unknown>;
  const setCookie = r.headers.get('set-cookie');
  const signed = r.ok && setCookie ? { cookie: setCookie.split(';')[0]!, csrf: body.csrf as string, admin: body.admin as string } : undefined;
  return { status: r.status, body, setCookie, ...(signed ? { signed } : {}) };
}

/** An action as the page sends it; `s` decides which credentials go with it. */
export async function act(base: string, op: string, args: Record<string, unknown>, s: { cookie?: string; csrf?: string; origin?: string } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (s.cookie) headers.cookie = s.cookie;
  if (s.csrf) headers['x-csrf-token'] = s.csrf;
  if (s.origin) headers.origin = s.origin;
  const r = await fetch(new URL('/api/op', base), { method: 'POST', headers, body: JSON.stringify({ op, args }) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

/** The console's live stream, read as far as a test needs. */
export async function openStream(base: string, cookie: string): Promise<{ status: number; text(): string; readUntil(re: RegExp, ms: number): Promise<string>; close(): void }> {
  const ac = new AbortController();
  const r = await fetch(new URL('/api/events', base), { headers: { cookie }, signal: ac.signal });
  const reader = (r.body as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let text = '';
  let ended = false;
  return {
    status: r.status,
    text: () => text,
    async readUntil(re, ms) {
      const end = Date.now() + ms;
      while (!re.test(text) && !ended && Date.now() < end) {
        let timer: NodeJS.Timeout | undefined;
        const next = await Promise.race([reader.read(), new Promise<null>((res) => (timer = setTimeout(() => res(null), end - Date.now())))]);
        clearTimeout(timer);
        if (next === null) break;
        if (next.done) ended = true;
        else text += dec.decode(next.value, { stream: true });
      }
      return text;
    },
    close: () => ac.abort(),
  };
}

/** Read the console's live stream until its text matches `re` (or the deadline passes); what was read. */
export async function watchUntil(base: string, cookie: string, re: RegExp, ms: number): Promise<string> {
  const s = await openStream(base, cookie);
  try {
    return await s.readUntil(re, ms);
  } finally {
    s.close();
  }
}
