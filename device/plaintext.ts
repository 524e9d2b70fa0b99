/**
 * Plaintext terminal (patent 7): it cannot encrypt and holds no key. It
 * speaks length-prefixed CBOR frames to its relay port: config, then join,
 * then data; its keys go to the relay. One request at a time. It answers
 * the relay's pings: a terminal that stops answering is, after the config
 * server's missed polls, evicted from its VPNs.
 */
import { KagiError } from '../protocol/errors.js';
import { PortFrameDecoder, encodePortFrame, type PortFrame } from '../protocol/port-frame.js';
import { asBody, bytes, str } from '../protocol/body.js';
import { ID_PATTERN } from '../protocol/limits.js';
import { MAC_PATTERN } from './bundle.js';

export interface PlainConfig {
  id: string;
  mac: string;
  relay: string;
  port: string;
}

/** The plaintext terminal's file: identity and its relay binding, no key. */
export function parsePlainConfig(json: unknown): PlainConfig {
  const b = json as Record<string, unknown>;
  if (typeof b !== 'object' || b === null || b.kagi !== 1 || b.kind !== 'plaintext') throw new KagiError('argument', 'not a plaintext terminal file (kagi: 1, kind: plaintext)');
  if (typeof b.id !== 'string' || !ID_PATTERN.test(b.id)) throw new KagiError('argument', 'id must match [A-Za-z0-9._:-]{1,64}');
  if (typeof b.mac !== 'string' || !MAC_PATTERN.test(b.mac)) throw new KagiError('argument', 'mac must look like 02:00:00:00:00:01');
  if (typeof b.relay !== 'string' || typeof b.port !== 'string') throw new KagiError('argument', 'relay and port must be strings');
  return { id: b.id, mac: b.mac, relay: b.relay, port: b.port };
}

export interface Pipe {
  write(bytes: Uint8Array): void;
}

export class PlaintextAgent {
  private readonly decoder = new PortFrameDecoder();
  private waiter: { want: string[]; resolve(f: PortFrame): void; reject(e: Error): void; extend(retryAfterS: number, reason: string): void } | null = null;
  config: Record<string, unknown> | null = null;

  constructor(
    readonly cfg: PlainConfig,
    private readonly pipe: Pipe,
    private readonly o: {
      timeoutMs?: number;
      onData?(vpn: string, peer: string, bytes: Uint8Array): void;
      onRestricted?(vpn: string, reason?: string): void;
      /** The relay waits retryAfter seconds (throttled, busy) before asking again on our behalf. */
      onWaiting?(retryAfterS: number, reason: string): void;
    } = {},
  ) {}

  /** Bytes from the relay port. */
  input(chunk: Uint8Array): void {
    for (const f of this.decoder.push(chunk)) {
      if (f instanceof KagiError) continue; // a bad frame from the relay: ignore it
      if (f.type === 'ping') this.pipe.write(encodePortFrame({ type: 'pong', body: {} })); // the relay vouches for us while we answer
      else if (f.type === 'data') this.o.onData?.(str(f.body, 'vpn', 64), str(f.body, 'peer', 64), bytes(f.body, 'bytes'));
      else if (f.type === 'restricted') this.o.onRestricted?.(str(f.body, 'vpn', 64), typeof f.body.reason === 'string' ? f.body.reason : undefined);
      else if (f.type === 'waiting' && this.waiter && typeof f.body.retryAfter === 'number') this.waiter.extend(f.body.retryAfter, typeof f.body.reason === 'string' ? f.body.reason : '');
      else if (this.waiter && (this.waiter.want.includes(f.type) || f.type === 'refused')) {
        const w = this.waiter;
        this.waiter = null;
        if (f.type === 'refused') w.reject(new Error(`refused: ${String(f.body.reason)}`));
        else w.resolve(f);
      }
    }
  }

  private request(f: PortFrame, want: string): Promise<PortFrame> {
    if (this.waiter) return Promise.reject(new KagiError('argument', 'a request is already pending'));
    const timeoutMs = this.o.timeoutMs ?? 15_000;
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout>;
      const arm = (ms: number) => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          this.waiter = null;
          reject(new Error(`no ${want} from the relay within ${ms} ms`));
        }, ms);
      };
      arm(timeoutMs);
      this.waiter = {
        want: [want],
        resolve: (x) => (clearTimeout(timer), resolve(x)),
        reject: (e) => (clearTimeout(timer), reject(e)),
        // The relay was told to come back later and will: its wait (at most
        // twice retryAfter with jitter) plus an ordinary answer's time.
        extend: (retryAfterS, reason) => {
          this.o.onWaiting?.(retryAfterS, reason);
          arm(2 * retryAfterS * 1000 + timeoutMs);
        },
      };
      this.pipe.write(encodePortFrame(f));
    });
  }

  async configure(): Promise<Record<string, unknown>> {
    const r = await this.request({ type: 'config', body: { id: this.cfg.id, mac: this.cfg.mac } }, 'configured');
    this.config = asBody(r.body.config);
    return this.config;
  }

  /** Without a password the relay joins with the ticket it holds for us (from an earlier join with it). */
  async join(user: string, password?: string): Promise<{ id: string; protocol: string; port: number }[]> {
    const r = await this.request({ type: 'join', body: { user, ...(password !== undefined ? { password } : {}) } }, 'joined');
    return (r.body.vpns as { id: string; protocol: string; port: number }[]).map((v) => ({ id: v.id, protocol: v.protocol, port: v.port }));
  }

  /** Data to a VPN peer (or 'all'); the relay seals it if the port forwards. */
  send(vpn: string, peer: string, data: Uint8Array): void {
    this.pipe.write(encodePortFrame({ type: 'data', body: { vpn, peer, bytes: data } }));
  }
}
