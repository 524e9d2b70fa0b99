/**
 * NumberStore in a JSON file, written through (json-file.ts: the older of
 * two slots overwritten, coalesced) before each set resolves, so a counter
 * reservation survives kill -9 before it is used.
 */
import type { NumberStore } from '../../protocol/store.js';
import { JsonFile } from './json-file.js';

export class FileNumberStore implements NumberStore {
  private readonly m: Map<string, number>;
  private readonly out: JsonFile<Record<string, number>>;

  constructor(file: string) {
    this.out = new JsonFile(file, () => Object.fromEntries(this.m));
    this.m = new Map(Object.entries(this.out.load() ?? {}));
  }

  async get(key: string): Promise<number | undefined> {
    return this.m.get(key);
  }

  set(key: string, value: number): Promise<void> {
    this.m.set(key, value);
    return this.out.save();
  }
}
