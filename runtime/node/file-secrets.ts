/**
 * An agent's secrets on Node (resumption tickets): one JSON file of hex
 * values beside the device file, 0600, replaced by rename so a crash
 * leaves the old file or the new one, never half of either.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { SecretStore } from '../../device/platform.js';
import { fromHex, toHex } from '../../protocol/bytes.js';

export class FileSecretStore implements SecretStore {
  private readonly m: Map<string, string>;

  constructor(private readonly file: string) {
    this.m = new Map(existsSync(file) ? Object.entries(JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>) : []);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const v = this.m.get(key);
    return v === undefined ? undefined : fromHex(v);
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    this.m.set(key, toHex(value));
    this.save();
  }

  async delete(key: string): Promise<void> {
    if (this.m.delete(key)) this.save();
  }

  private save(): void {
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.m)), { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
