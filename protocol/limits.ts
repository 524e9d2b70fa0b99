/**
 * Every size limit of the wire format, in one place.
 *
 * Decoders check these before doing any work, so a hostile peer cannot make a
 * small board allocate or hash more than these bounds.
 */
export const LIMITS = {
  /** Whole envelope on the wire (MQTT payload of a control message). */
  envelopeBytes: 65_536,
  /** Device and service ids: short, printable, usable as an MQTT topic level. */
  idChars: 64,
  /** Ciphertext of one envelope (plaintext + 16-byte tag). */
  ciphertextBytes: 65_000,
  /** Sequence numbers and request ids are CBOR uint32: cbor-x encodes larger
   *  JS numbers as floats, and 2^32 control messages outlast any device. */
  maxSeq: 0xffff_ffff,
  /** Whole VPN data frame on the wire. */
  frameBytes: 65_536,
  /** VPN frame ciphertext (payload + tag). */
  frameCiphertextBytes: 65_000,
  /** VPN ids. */
  vpnIdChars: 64,
  /** Per-sender VPN frame counter: uint32 in the frame, the low bits of the
   *  96-bit nonce. A sender that reaches it must wait for a rekey. */
  maxFrameCounter: 0xffff_ffff,
  /** Epoch numbers of VPN group keys. */
  maxEpoch: 0xffff_ffff,
} as const;

/** Ids travel in MQTT topics: no wildcards, separators or control chars. */
export const ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

/** A device's MAC as the tables (1c) and device files hold it: six hex pairs and colons. */
export const MAC_PATTERN = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
