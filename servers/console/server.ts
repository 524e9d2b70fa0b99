/**
 * The web console (`kagi up --ui-port N`): node:http, one route table.
 *
 *   GET  /, /app.js, /style.css, /vendor/…  the page (static-files.ts)
 *   POST /api/login    {token}     a login token → session cookie + CSRF token
 *   GET  /api/session             who is signed in, the CSRF token
 *   POST /api/logout              (CSRF)
 *   GET  /api/events              server-sent events: fleet, rates, expired
 *   GET  /api/device/ID           the device page's data (device-view.ts)
 *   POST /api/op       {op, args} an action (CSRF): one of ACTIONS, run
 *                                 through runAdminOp as admin:ID
 *
 * Every /api route but login needs a live session (401 otherwise); every
 * POST needs JSON and, when the browser sends one, our own Origin; every
 * POST but login needs the session's CSRF token in X-CSRF-Token (403).
 * The cookie is HttpOnly and SameSite=Strict; it carries no Secure flag
 * because the console serves plain HTTP on loopback by default (put a TLS
 * proxy in front to serve it further: decision 94).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Crypto } from '../../protocol/crypto/backend.js';
import type { Metrics } from '../metrics.js';
import type { Store } from '../store/store.js';
import { publicKeys, type ServiceKeys } from '../identity.js';
import { runAdminOp } from '../admin-ops.js';
import { AdminError } from '../admin.js';
import { ConflictError } from '../store/store.js';
import { ConsoleSessions, type Session } from './sessions.js';
import { LoginTokenError } from './login-token.js';
import { FleetFeed } from './fleet-feed.js';
import { RecentEvents } from './recent.js';
import { deviceView } from './device-view.js';
import type { WhySettings } from '../why/explain.js';
import { loadStaticFiles } from './static-files.js';

/** What an operator may do from the page: the CLI's operations of the same names. */
export const ACTIONS = ['device.revoke', 'vpn.rekey', 'vpn.grant', 'vpn.revoke'] as const;
const COOKIE = 'kagi_console';
const MAX_BODY = 16 * 1024;
/** setTimeout's longest delay (2^31 − 1 ms, ~24.8 days); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Log = (level: 'debug' | 'info' | 'warn', msg: string) => void;

export interface ConsoleOptions {
  host: string;
  port: number;
  /** How long a session lasts (ms; default 1 h). */
  sessionMs?: number;
  crypto: Crypto;
  store: Store;
  keys: ServiceKeys;
  metrics: Metrics;
  recent: RecentEvents;
  /** kagi up's settings for the device page's why (liveness, the network drivers it runs). */
  why?: WhySettings;
  /** Apply an action to the network devices now rather than at the next reconcile. */
  reconcile?: () => Promise<void>;
  log?: Log;
  /** How often the tables are read for the live view (ms; default 500). */
  tickMs?: number;
}

export interface RunningConsole {
  url: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function cookieOf(req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return v.join('=');
  }
  return undefined;
}

async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) throw new HttpError(415, 'send JSON');
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new HttpError(413, 'request too large');
    chunks.push(c);
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new HttpError(400, 'malformed JSON');
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers }).end(JSON.stringify(body));
}

export async function startConsole(o: ConsoleOptions): Promise<RunningConsole> {
  const log: Log = o.log ?? (() => {});
  const { files, importMapHash } = loadStaticFiles();
  const sessions = new ConsoleSessions({ crypto: o.crypto, store: o.store, configSecret: o.keys.config.secretKey, ...(o.sessionMs !== undefined ? { sessionMs: o.sessionMs } : {}) });
  const feed = new FleetFeed({ store: o.store, metrics: o.metrics, recent: o.recent, ...(o.tickMs ? { tickMs: o.tickMs } : {}), log });
  const csp = `default-src 'self'; script-src 'self' 'sha256-${importMapHash}'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'`;
  const streams = new Set<ServerResponse>();

  const needSession = async (req: IncomingMessage): Promise<Session> => {
    const s = await sessions.session(cookieOf(req));
    if (!s) throw new HttpError(401, 'not signed in (or the session expired): run kagi admin login ADMIN-FILE --url …');
    return s;
  };

  /** A POST from our own page: JSON, our Origin if the browser says one, and (unless signing in) the CSRF token. */
  const checkPost = (req: IncomingMessage, s?: Session) => {
    const origin = req.headers.origin;
    if (origin !== undefined && origin.replace(/^https?:\/\//, '') !== (req.headers.host ?? '')) throw new HttpError(403, 'cross-origin request refused');
    const header = req.headers['x-csrf-token'];
    if (s && !sessions.csrfMatches(s, Array.isArray(header) ? header[0] : header)) throw new HttpError(403, 'missing or wrong CSRF token: reload the page');
  };

  const sessionBody = (s: Session) => ({ admin: s.admin, csrf: s.csrf, expiresAt: new Date(s.expiresAt).toISOString() });

  async function login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    checkPost(req);
    const b = await jsonBody(req);
    try {
      const { id, session } = await sessions.signIn(typeof b.token === 'string' ? b.token : '');
      log('info', `console: ${session.admin} signed in`);
      send(res, 200, sessionBody(session), { 'set-cookie': `${COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${Math.floor(sessions.sessionMs / 1000)}` });
    } catch (e) {
      if (!(e instanceof LoginTokenError)) throw e;
      log('warn', `console: sign-in refused: ${e.message}`);
      throw new HttpError(401, `sign-in refused: ${e.message.replace(/^token of \S+ /, 'the token ')}`);
    }
  }

  async function action(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const s = await needSession(req);
    checkPost(req, s);
    const b = await jsonBody(req);
    const op = typeof b.op === 'string' ? b.op : '';
    if (!(ACTIONS as readonly string[]).includes(op)) throw new HttpError(400, `not an action of the console: ${op || '(none)'} (one of ${ACTIONS.join(', ')})`);
    try {
      const result = await runAdminOp({ store: o.store, services: async () => publicKeys(o.keys), actor: `admin:${s.admin}` }, op, b.args ?? {});
      log('info', `console: admin ${s.admin}: ${op} ${JSON.stringify(b.args ?? {})}`);
      await o.reconcile?.().catch((e: Error) => log('warn', `console: reconcile after ${op}: ${e.message}`));
      await feed.poke();
      send(res, 200, { ok: true, result: result ?? null });
    } catch (e) {
      if (e instanceof AdminError || e instanceof ConflictError) throw new HttpError(409, e.message);
      throw e;
    }
  }

  function events(req: IncomingMessage, res: ServerResponse, s: Session): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    streams.add(res);
    // The stream ends with its session: the page hears why and shows sign-in.
    const end = () => void (res.writableEnded || res.end('event: expired\ndata: {}\n\n'));
    // Before each fleet change the session is checked again (a revoked
    // admin's page stops there), in order: one check at a time per stream.
    let queue = Promise.resolve();
    const unwatch = feed.watch((e) => {
      if (e.event !== 'fleet') return void res.write(`event: ${e.event}\ndata: ${e.data}\n\n`);
      queue = queue.then(async () => {
        if (res.writableEnded) return;
        if (await sessions.session(cookieOf(req))) res.write(`event: fleet\ndata: ${e.data}\n\n`);
        else end();
      }).catch((err: Error) => log('warn', `console: event stream: ${err.message}`));
    });
    const expiry = setTimeout(end, Math.min(MAX_TIMER_MS, Math.max(0, s.expiresAt - Date.now())));
    res.on('close', () => {
      clearTimeout(expiry);
      unwatch();
      streams.delete(res);
    });
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET' && files.has(path)) {
      const f = files.get(path)!;
      res.writeHead(200, { 'content-type': f.type, 'content-security-policy': csp, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'cache-control': 'no-cache' }).end(f.body);
      return;
    }
    if (req.method === 'POST' && path === '/api/login') return login(req, res);
    if (req.method === 'POST' && path === '/api/op') return action(req, res);
    if (req.method === 'POST' && path === '/api/logout') {
      const s = await needSession(req);
      checkPost(req, s);
      sessions.signOut(cookieOf(req));
      send(res, 200, { ok: true }, { 'set-cookie': `${COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0` });
      return;
    }
    if (req.method === 'GET' && path === '/api/session') return send(res, 200, sessionBody(await needSession(req)));
    if (req.method === 'GET' && path === '/api/events') return events(req, res, await needSession(req));
    if (req.method === 'GET' && path.startsWith('/api/device/')) {
      await needSession(req);
      const v = await deviceView(o.store, decodeURIComponent(path.slice('/api/device/'.length)), o.why);
      if (!v) throw new HttpError(404, 'no such device');
      return send(res, 200, v);
    }
    throw new HttpError(404, 'not found');
  }

  const server: Server = createServer((req, res) => {
    route(req, res).catch((e: unknown) => {
      const status = e instanceof HttpError ? e.status : 500;
      if (status === 500) log('warn', `console: ${req.method} ${req.url}: ${(e as Error).message}`);
      if (!res.headersSent) send(res, status, { error: status === 500 ? 'the console failed (see the control plane log)' : (e as Error).message });
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? new Error(`console port ${o.port} on ${o.host} is in use: choose another with --ui-port N`) : e));
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}/`,
    close: async () => {
      feed.close();
      for (const r of streams) r.end();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export { RecentEvents };
