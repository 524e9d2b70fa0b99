/**
 * An agent's secrets on Node (resumption tickets): one JSON file of hex
 * values beside the device file, 0600, written so that a crash leaves the
 * old content or the new, never half of either (json-file.ts; each set or
 * delete resolves once it is on disk).
 */
import type { SecretStore } from '../../device/platform.js';
import { fromHex, toHex } from '../../protocol/bytes.js';
import { JsonFile } from './json-file.js';

export class FileSecretStore implements SecretStore {
  private readonly m: Map<string, string>;
  private readonly out: JsonFile<Record<string, string>>;

  constructor(file: string) {
    this.out = new JsonFile(file, () => Object.fromEntries(this.m));
    this.m = new Map(Object.entries(this.out.load() ?? {}));
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
