/**
 * HPKE (RFC 9180) for the one suite kagi uses:
 *   KEM  DHKEM(X25519, HKDF-SHA256)  0x0020
 *   KDF  HKDF-SHA256                 0x0001
 *   AEAD ChaCha20-Poly1305           0x0003
 * Modes base, psk, auth and auth_psk (§5.1). Checked against every RFC 9180
 * A.2 vector in ../shared/vectors/hpke.
 *
 * Ephemeral keys come from the injected Crypto's random source; tests pass a
 * fixed ikmE to reproduce the vectors.
 */
import type { Crypto } from './crypto/backend.js';
import { AEAD_NONCE_LENGTH, AEAD_KEY_LENGTH } from './crypto/backend.js';
import { KagiError } from './errors.js';
import { concat, i2osp, utf8, wipe } from './bytes.js';

export const MODE_BASE = 0x00;
export const MODE_PSK = 0x01;
export const MODE_AUTH = 0x02;
export const MODE_AUTH_PSK = 0x03;
export type HpkeMode = 0 | 1 | 2 | 3;

const KEM_ID = 0x0020;
const KDF_ID = 0x0001;
const AEAD_ID = 0x0003;
const N_SECRET = 32; // Nsecret of DHKEM(X25519, HKDF-SHA256)
const N_H = 32;
export const N_ENC = 32;

const HPKE_V1 = utf8('HPKE-v1');
const SUITE_KEM = concat(utf8('KEM'), i2osp(KEM_ID, 2));
const SUITE_HPKE = concat(utf8('HPKE'), i2osp(KEM_ID, 2), i2osp(KDF_ID, 2), i2osp(AEAD_ID, 2));
const EMPTY = new Uint8Array(0);

export interface KeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

/** Options of a setup call; psk/pskId for the psk modes, ikmE for tests. */
export interface SetupOptions {
  info?: Uint8Array;
  psk?: Uint8Array;
  pskId?: Uint8Array;
  /** Deterministic ephemeral key (RFC 9180 test vectors). Never in production. */
  ikmE?: Uint8Array;
}

// §4: LabeledExtract / LabeledExpand. Their fixed parts ("HPKE-v1", the
// suite, the label, and Expand's length) are public and few: made once per
// combination, not encoded and joined again at each of the ~30 calls a
// re-join makes.
const prefixes = new Map<string, Uint8Array>();
function prefix(suite: Uint8Array, label: string, L?: number): Uint8Array {
  const key = `${suite === SUITE_KEM ? 'K' : 'H'} ${label} ${L ?? ''}`;
  let p = prefixes.get(key);
  if (!p) prefixes.set(key, (p = L === undefined ? concat(HPKE_V1, suite, utf8(label)) : concat(i2osp(L, 2), HPKE_V1, suite, utf8(label))));
  return p;
}

function labeledExtract(c: Crypto, suite: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array): Uint8Array {
  return c.hkdfExtract(salt, concat(prefix(suite, label), ikm));
}

function labeledExpand(c: Crypto, suite: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, L: number): Uint8Array {
  return c.hkdfExpand(prk, concat(prefix(suite, label, L), info), L);
}

/** §7.1.3 DeriveKeyPair for X25519: the scalar is clamped inside X25519. */
export function deriveKeyPair(c: Crypto, ikm: Uint8Array): KeyPair {
  const prk = labeledExtract(c, SUITE_KEM, EMPTY, 'dkp_prk', ikm);
  const secretKey = labeledExpand(c, SUITE_KEM, prk, 'sk', EMPTY, 32);
  wipe(prk);
  return { secretKey, publicKey: c.publicKey(secretKey) };
}

function extractAndExpand(c: Crypto, dh: Uint8Array, kemContext: Uint8Array): Uint8Array {
  const prk = labeledExtract(c, SUITE_KEM, EMPTY, 'eae_prk', dh);
  const ss = labeledExpand(c, SUITE_KEM, prk, 'shared_secret', kemContext, N_SECRET);
  wipe(prk);
  return ss;
}

/** §4.1 Encap / AuthEncap: returns the shared secret and enc. */
function encap(c: Crypto, pkR: Uint8Array, skS: Uint8Array | undefined, ikmE: Uint8Array | undefined) {
  const eph = ikmE ? deriveKeyPair(c, ikmE) : c.generateKeyPair();
  const enc = eph.publicKey;
  const parts = [c.dh(eph.secretKey, pkR)];
  let kemContext = concat(enc, pkR);
  if (skS) {
    parts.push(c.staticDh(skS, pkR));
    kemContext = concat(kemContext, c.publicKey(skS));
  }
  const dh = concat(...parts);
  const sharedSecret = extractAndExpand(c, dh, kemContext);
  wipe(dh, eph.secretKey, ...parts);
  return { sharedSecret, enc };
}

/** §4.1 Decap / AuthDecap. */
function decap(c: Crypto, enc: Uint8Array, skR: Uint8Array, pkS: Uint8Array | undefined): Uint8Array {
  if (enc.length !== N_ENC) throw new KagiError('key', `enc must be ${N_ENC} bytes`);
  const pkR = c.publicKey(skR);
  const parts = [c.dh(skR, enc, true)];
  let kemContext = concat(enc, pkR);
  if (pkS) {
    parts.push(c.staticDh(skR, pkS));
    kemContext = concat(kemContext, pkS);
  }
  const dh = concat(...parts);
  const ss = extractAndExpand(c, dh, kemContext);
  wipe(dh, ...parts);
  return ss;
}

/** §5.1.1 VerifyPSKInputs. */
function verifyPsk(mode: HpkeMode, psk: Uint8Array, pskId: Uint8Array): void {
  const gotPsk = psk.length > 0;
  const gotId = pskId.length > 0;
  if (gotPsk !== gotId) throw new KagiError('argument', 'HPKE: psk and psk_id must be given together');
  const wants = mode === MODE_PSK || mode === MODE_AUTH_PSK;
  if (gotPsk !== wants) throw new KagiError('argument', `HPKE: mode ${mode} ${wants ? 'needs' : 'takes no'} psk`);
  // §9.5: a PSK must have at least 32 bytes of entropy.
  if (wants && psk.length < 32) throw new KagiError('argument', 'HPKE: psk shorter than 32 bytes');
}

/**
 * psk_id_hash ‖ info_hash of the key schedule: functions of public inputs
 * only (no key, no secret), and kagi seals every request with one info and
 * no psk_id, so they are computed once per info rather than at every setup
 * (two of its eight HMAC-based steps). With a psk_id they are computed
 * each time: nothing of a psk mode is kept.
 */
const publicHashCache = new Map<string, Uint8Array>();
function publicHashes(c: Crypto, pskId: Uint8Array, info: Uint8Array): Uint8Array {
  const compute = () => concat(labeledExtract(c, SUITE_HPKE, EMPTY, 'psk_id_hash', pskId), labeledExtract(c, SUITE_HPKE, EMPTY, 'info_hash', info));
  if (pskId.length > 0 || info.length > 256) return compute();
  const key = String.fromCharCode(...info);
  let h = publicHashCache.get(key);
  if (!h) {
    if (publicHashCache.size >= 16) publicHashCache.clear();
    publicHashCache.set(key, (h = compute()));
  }
  return h;
}

/** §5.1 KeySchedule. */
function keySchedule(c: Crypto, mode: HpkeMode, sharedSecret: Uint8Array, o: SetupOptions, role: 'S' | 'R'): HpkeContext {
  const info = o.info ?? EMPTY;
  const psk = o.psk ?? EMPTY;
  const pskId = o.pskId ?? EMPTY;
  verifyPsk(mode, psk, pskId);
  const ksc = concat(Uint8Array.of(mode), publicHashes(c, pskId, info));
  const secret = labeledExtract(c, SUITE_HPKE, sharedSecret, 'secret', psk);
  const key = labeledExpand(c, SUITE_HPKE, secret, 'key', ksc, AEAD_KEY_LENGTH);
  const baseNonce = labeledExpand(c, SUITE_HPKE, secret, 'base_nonce', ksc, AEAD_NONCE_LENGTH);
  const exporterSecret = labeledExpand(c, SUITE_HPKE, secret, 'exp', ksc, N_H);
  wipe(secret, sharedSecret);
  return new HpkeContext(c, role, key, baseNonce, exporterSecret);
}

/**
 * An HPKE encryption context (§5.2). A sender context only seals, a
 * recipient context only opens; the sequence number makes every nonce
 * unique, and a failed open does not advance it.
 */
export class HpkeContext {
  private seq = 0;

  constructor(
    private readonly c: Crypto,
    readonly role: 'S' | 'R',
    private readonly key: Uint8Array,
    private readonly baseNonce: Uint8Array,
    private readonly exporterSecret: Uint8Array,
  ) {}

  /** The next sequence number (§5.2). */
  get sequence(): number {
    return this.seq;
  }

  /** §5.2 ComputeNonce: base_nonce XOR I2OSP(seq, Nn). */
  private nonce(): Uint8Array {
    const n = i2osp(this.seq, AEAD_NONCE_LENGTH);
    for (let i = 0; i < n.length; i++) n[i]! ^= this.baseNonce[i]!;
    return n;
  }

  private increment(): void {
    // §5.2 allows seq < 2^96 - 1; JS numbers are exact to 2^53 - 1, which no
    // single-shot or channel context gets near.
    if (this.seq >= Number.MAX_SAFE_INTEGER) throw new KagiError('exhausted', 'HPKE sequence number overflow');
    this.seq++;
  }

  seal(plaintext: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array {
    if (this.role !== 'S') throw new KagiError('argument', 'HPKE: seal on a recipient context');
    const ct = this.c.seal(this.key, this.nonce(), plaintext, aad);
    this.increment();
    return ct;
  }

  /** Returns null on authentication failure; the sequence stays put. */
  open(ciphertext: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array | null {
    if (this.role !== 'R') throw new KagiError('argument', 'HPKE: open on a sender context');
    const pt = this.c.open(this.key, this.nonce(), ciphertext, aad);
    if (pt) this.increment();
    return pt;
  }

  /** §5.3 secret export. */
  export(exporterContext: Uint8Array, L: number): Uint8Array {
    return labeledExpand(this.c, SUITE_HPKE, this.exporterSecret, 'sec', exporterContext, L);
  }

  /** Wipe the context's keys once it is done with. */
  destroy(): void {
    wipe(this.key, this.baseNonce, this.exporterSecret);
  }
}

function modeOf(auth: boolean, o: SetupOptions): HpkeMode {
  const psk = (o.psk?.length ?? 0) > 0 || (o.pskId?.length ?? 0) > 0;
  return ((auth ? 2 : 0) | (psk ? 1 : 0)) as HpkeMode;
}

/** §5.1.1–5.1.4 sender setup; mode follows from skS and psk. */
export function setupSender(c: Crypto, pkR: Uint8Array, o: SetupOptions & { skS?: Uint8Array } = {}) {
  const { sharedSecret, enc } = encap(c, pkR, o.skS, o.ikmE);
  return { enc, ctx: keySchedule(c, modeOf(!!o.skS, o), sharedSecret, o, 'S') };
}

/** §5.1.1–5.1.4 recipient setup; pass pkS for the auth modes. */
export function setupRecipient(c: Crypto, enc: Uint8Array, skR: Uint8Array, o: SetupOptions & { pkS?: Uint8Array } = {}): HpkeContext {
  const ss = decap(c, enc, skR, o.pkS);
  return keySchedule(c, modeOf(!!o.pkS, o), ss, o, 'R');
}
