/**
 * The envelope of every control message (DESIGN §5):
 *   [version, type, from, to, seq, reqId, enc, ciphertext]
 * enc is the 32-byte HPKE encapsulated key for `sealed` types and null for
 * `reply` and `channel` types. Everything before the ciphertext is the
 * header, which is the AEAD's associated data as received on the wire.
 */
import { KagiError } from './errors.js';
import { ID_PATTERN, LIMITS } from './limits.js';
import { appendBytes, decodeStrict, encodeHeader, expectArray, expectBytes, expectString, expectUint, receivedHeader } from './cbor.js';
import { typeByCode, typeCode, type MessageKind, type MessageType } from './messages.js';
import { N_ENC } from './hpke.js';
import { AEAD_TAG_LENGTH } from './crypto/backend.js';

export const ENVELOPE_VERSION = 1;

export interface EnvelopeHeader {
  type: MessageType;
  from: string;
  to: string;
  /** Per (from, to) sequence: strictly increasing, never reused. */
  seq: number;
  /** The request this message starts or answers. */
  reqId: number;
  enc: Uint8Array | null;
}

export interface Envelope extends EnvelopeHeader {
  kind: MessageKind;
  ciphertext: Uint8Array;
  /** Header bytes exactly as received: the AEAD associated data. */
  header: Uint8Array;
}

function checkEnc(kind: MessageKind, enc: Uint8Array | null): void {
  if ((kind === 'sealed') !== (enc !== null)) {
    throw new KagiError('field', kind === 'sealed' ? 'sealed message without enc' : `${kind} message with enc`);
  }
}

/** Header bytes for a message about to be sealed (its AAD). */
export function encodeEnvelopeHeader(h: EnvelopeHeader): Uint8Array {
  const kind = typeByCode(typeCode(h.type)).kind;
  checkEnc(kind, h.enc);
  expectString(h.from, ID_PATTERN, 'from');
  expectString(h.to, ID_PATTERN, 'to');
  expectUint(h.seq, LIMITS.maxSeq, 'seq');
  expectUint(h.reqId, LIMITS.maxSeq, 'reqId');
  return encodeHeader([ENVELOPE_VERSION, typeCode(h.type), h.from, h.to, h.seq, h.reqId, h.enc]);
}

export function encodeEnvelope(header: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  if (ciphertext.length > LIMITS.ciphertextBytes) throw new KagiError('size', 'ciphertext too large');
  return appendBytes(header, ciphertext);
}

/** Strict decode; every failure is a KagiError with a code. */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  const a = expectArray(decodeStrict(bytes, LIMITS.envelopeBytes), 8, 'envelope');
  const version = expectUint(a[0], 0xffff, 'version');
  if (version !== ENVELOPE_VERSION) throw new KagiError('version', `envelope version ${version}`);
  const { name: type, kind } = typeByCode(expectUint(a[1], 0xffff, 'type'));
  const from = expectString(a[2], ID_PATTERN, 'from');
  const to = expectString(a[3], ID_PATTERN, 'to');
  const seq = expectUint(a[4], LIMITS.maxSeq, 'seq');
  const reqId = expectUint(a[5], LIMITS.maxSeq, 'reqId');
  const enc = a[6] === null ? null : expectBytes(a[6], 'enc', N_ENC, N_ENC);
  checkEnc(kind, enc);
  const ciphertext = expectBytes(a[7], 'ciphertext', AEAD_TAG_LENGTH, LIMITS.ciphertextBytes);
  return { type, kind, from, to, seq, reqId, enc, ciphertext, header: receivedHeader(bytes, ciphertext) };
}
