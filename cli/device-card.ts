/**
 * What an installer checks on site: the device id and the fingerprint of
 * its public key, as text and as a QR code (terminal and PNG). The QR holds
 * "kagi:ID:FINGERPRINT"; the fingerprint is the first 16 bytes of
 * SHA-256(public key) in hex, in groups of four, as `kagi status` could
 * show it next to the registered key.
 */
import QRCode from 'qrcode';
import type { Crypto } from '../protocol/crypto/backend.js';
import { fromHex, toHex } from '../protocol/bytes.js';

export function fingerprint(c: Crypto, publicKey: Uint8Array): string {
  return toHex(c.sha256(publicKey).subarray(0, 16)).replace(/(.{4})(?!$)/g, '$1 ');
}

export interface DeviceCard {
  id: string;
  fingerprint: string;
  /** What the QR code holds. */
  text: string;
}

/** The card of a device file (kagi device add / provision output). */
export function deviceCard(c: Crypto, file: Record<string, unknown>): DeviceCard {
  if (typeof file.id !== 'string' || typeof file.secretKey !== 'string') throw new Error('not a device file with a key (plaintext terminals have no key to check)');
  const fp = fingerprint(c, c.publicKey(fromHex(file.secretKey)));
  return { id: file.id, fingerprint: fp, text: `kagi:${file.id}:${fp.replace(/ /g, '')}` };
}

export function qrTerminal(text: string): Promise<string> {
  return QRCode.toString(text, { type: 'terminal', small: true, errorCorrectionLevel: 'M' });
}

export function qrPng(text: string, file: string): Promise<void> {
  return QRCode.toFile(file, text, { type: 'png', errorCorrectionLevel: 'M', margin: 2, scale: 6 });
}
