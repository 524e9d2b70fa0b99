/**
 * An agent's secrets on Node (resumption tickets): one JSON file of hex
 * values beside the device file, 0600, replaced by rename so a crash
 * leaves the old file or the new one, never half of either (json-file.ts;
 * each set or delete resolves once it is on disk).
 */
import type { SecretStore } from '../../device/platform.js';
import { fromHex, toHex } from '../../protocol/bytes.js';
import { JsonFile } from './json-file.js';

export class FileSecretStore implements SecretStore {
  private readonly m: Map<string, string>;
  private readonly out: JsonFile<Record<string, string>>;

  constructor(file: string) {
    this.m = new Map(Object.entries(JsonFile.read<Record<string, string>>(file) ?? {}));
    this.out = new JsonFile(file, () => Object.fromEntries(this.m));
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const v = this.m.get(key);
    return v === undefined ? undefined : fromHex(v);
  }

  set(key: string, value: Uint8Array): Promise<void> {
    this.m.set(key, toHex(value));
    return this.out.save();
  }

  async delete(key: string): Promise<void> {
    if (this.m.delete(key)) await this.out.save();
  }
}
