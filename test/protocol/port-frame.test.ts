/** The relay port link's framing: resumable, bounded, never desynchronised by a bad frame. */
import t from 'tap';
import fc from 'fast-check';
import { MAX_PORT_FRAME, PortFrameDecoder, encodePortFrame, type PortFrame } from '../../protocol/port-frame.js';
import { KagiError } from '../../protocol/errors.js';
import { concat } from '../../protocol/bytes.js';

const frames: PortFrame[] = [
  { type: 'config', body: { id: 'plain-1', mac: '02:00:00:00:00:01' } },
  { type: 'data', body: { vpn: 'plant', peer: 'term-a', bytes: new Uint8Array(300).fill(7) } },
  { type: 'join', body: { user: 'pam', password: 'x' } },
];

t.test('frames survive any chunking', async (t) => {
  const wire = concat(...frames.map(encodePortFrame));
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 50 }), (cuts) => {
      const d = new PortFrameDecoder();
      const out: unknown[] = [];
      let o = 0;
      for (const c of cuts) {
        out.push(...d.push(wire.subarray(o, o + c)));
        o += c;
      }
      out.push(...d.push(wire.subarray(o)));
      return out.length === 3 && (out as PortFrame[]).every((f, i) => f.type === frames[i]!.type);
    }),
    { numRuns: 300 },
  );
  t.pass('300 random chunkings decode to the same three frames');
});

t.test('bad frames are typed errors and the stream goes on', async (t) => {
  const d = new PortFrameDecoder();
  const bad = [
    Uint8Array.of(0, 0, 0, 2, 0xff, 0xff), // not CBOR
    concat(Uint8Array.of(0, 0, 0, 3), Uint8Array.of(0x82, 0x61, 0x78).subarray(0, 3)), // truncated array
    encodePortFrame({ type: 'config', body: {} }).slice(0, 4), // only a header so far
  ];
  const out = [...d.push(bad[0]!), ...d.push(bad[1]!)];
  t.same(out.map((e) => (e instanceof KagiError ? e.code : 'frame')), ['decode', 'decode'], 'malformed and truncated payloads: decode errors');
  const over = concat(Uint8Array.of(0, 1, 0, 1), new Uint8Array(MAX_PORT_FRAME + 1), encodePortFrame(frames[0]!));
  const after = d.push(over);
  t.equal((after[0] as KagiError).code, 'size', 'oversize length: a size error');
  t.equal((after[1] as PortFrame).type, 'config', 'the frame after an oversize one still decodes');
  t.same(d.push(encodePortFrame({ type: 'data', body: { x: 1 } })).length, 1, 'and the next');
  const typed = d.push(concat(Uint8Array.of(0, 0, 0, 7), Uint8Array.of(0x82, 0x63, 0x66, 0x6f, 0x6f, 0xa0, 0x00).subarray(0, 7)));
  t.ok(typed[0] instanceof KagiError, 'unknown type or trailing bytes: a typed error');
  t.throws(() => encodePortFrame({ type: 'data', body: { b: new Uint8Array(MAX_PORT_FRAME) } }), { name: 'KagiError', code: 'size' }, 'encoding an oversize frame is refused');
});
