/**
 * The local link between a plaintext terminal and its relay port (DESIGN
 * §7): length-prefixed CBOR frames, 4-byte big-endian length then
 * cbor([type, body]). The decoder resumes across any chunk split, checks
 * the length before buffering, and turns bad input into a KagiError the port
 * drops and counts; the link itself keeps working after a bad frame.
 */
import { KagiError } from './errors.js';
import { concat, i2osp } from './bytes.js';
import { byteStringHead, decodeStrict, encodeParts } from './cbor.js';

export const MAX_PORT_FRAME = 64 * 1024;

export type PortFrameType =
  | 'config' // plain → relay: { id, mac }
  | 'join' // plain → relay: { user, password }
  | 'data' // both ways: { vpn, peer, bytes }
  | 'configured' // relay → plain: { config }
  | 'joined' // relay → plain: { vpns }
  | 'refused' // relay → plain: { reason }
  | 'waiting' // relay → plain: { code, reason, retryAfter } (throttled or busy: the relay asks again by itself)
  | 'restricted' // relay → plain: { vpn, reason } (VPN deleted, member left or evicted)
  | 'ping' // relay → plain: {} (liveness: is the terminal on this port alive?)
  | 'pong'; // plain → relay: {}

const TYPES = new Set<string>(['config', 'join', 'data', 'configured', 'joined', 'refused', 'waiting', 'restricted', 'ping', 'pong']);

export interface PortFrame {
  type: PortFrameType;
  body: Record<string, unknown>;
}

/** Length and CBOR in one allocation: a data frame's bytes are copied once, never through the CBOR encoder. */
export function encodePortFrame(f: PortFrame): Uint8Array {
  const parts = dataFrameParts(f) ?? encodeParts([f.type, f.body]);
  let length = 0;
  for (const p of parts) length += p.length;
  if (length > MAX_PORT_FRAME) throw new KagiError('size', `port frame of ${length} bytes exceeds ${MAX_PORT_FRAME}`);
  return concat(i2osp(length, 4), ...parts);
}

/** CBOR of ['data', { vpn, peer, bytes: }] up to the bytes' head, by vpn and peer: the same for every frame between two members. */
const dataPrefixes = new Map<string, Uint8Array>();
const MAX_DATA_PREFIXES = 256;

/**
 * A data frame as { vpn, peer, bytes } (how relay and plaintext terminal
 * write them) in parts, its fixed prefix encoded once: exactly
 * encodeParts(['data', body]). Anything else: null.
 */
function dataFrameParts(f: PortFrame): Uint8Array[] | null {
  const b = f.body;
  if (f.type !== 'data' || typeof b.vpn !== 'string' || typeof b.peer !== 'string' || !(b.bytes instanceof Uint8Array)) return null;
  const keys = Object.keys(b);
  if (keys.length !== 3 || keys[0] !== 'vpn' || keys[1] !== 'peer' || keys[2] !== 'bytes') return null;
  const key = `${b.vpn.length}:${b.vpn}${b.peer}`; // unambiguous whatever the strings hold
  let prefix = dataPrefixes.get(key);
  if (!prefix) {
    if (dataPrefixes.size >= MAX_DATA_PREFIXES) dataPrefixes.clear();
    prefix = encodeParts(['data', { vpn: b.vpn, peer: b.peer, bytes: new Uint8Array(0) }])[0]!;
    dataPrefixes.set(key, prefix);
  }
  return [prefix, byteStringHead(b.bytes.length), b.bytes];
}

function decodePayload(b: Uint8Array): PortFrame {
  const v = decodeStrict(b, MAX_PORT_FRAME);
  if (!Array.isArray(v) || v.length !== 2) throw new KagiError('decode', 'port frame is not [type, body]');
  const [type, body] = v;
  if (typeof type !== 'string' || !TYPES.has(type)) throw new KagiError('type', `unknown port frame type ${String(type)}`);
  if (typeof body !== 'object' || body === null || Array.isArray(body) || body instanceof Uint8Array) throw new KagiError('field', 'port frame body is not a map');
  return { type: type as PortFrameType, body: body as Record<string, unknown> };
}

/**
 * Feed bytes as they arrive; complete frames and errors come out in order.
 * An oversize length is reported and its bytes skipped, so one bad frame
 * never desynchronises the link.
 */
export class PortFrameDecoder {
  private buf: Uint8Array = new Uint8Array(0);
  private skip = 0;

  push(chunk: Uint8Array): (PortFrame | KagiError)[] {
    const out: (PortFrame | KagiError)[] = [];
    let data = concat(this.buf, chunk);
    for (;;) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, data.length);
        this.skip -= n;
        data = data.subarray(n);
        if (this.skip > 0) break;
      }
      if (data.length < 4) break;
      const len = ((data[0]! << 24) >>> 0) + (data[1]! << 16) + (data[2]! << 8) + data[3]!;
      if (len > MAX_PORT_FRAME) {
        out.push(new KagiError('size', `port frame of ${len} bytes exceeds ${MAX_PORT_FRAME}`));
        this.skip = len;
        data = data.subarray(4);
        continue;
      }
      if (data.length < 4 + len) break;
      try {
        out.push(decodePayload(data.subarray(4, 4 + len)));
      } catch (e) {
        if (!(e instanceof KagiError)) throw e;
        out.push(e);
      }
      data = data.subarray(4 + len);
    }
    // `data` is our own copy (concat always allocates): keep the rest as a view of it.
    this.buf = data;
    return out;
  }
}
