/**
 * NumberStore in a JSON file, written through atomically (temp + rename) on
 * every set, so a counter reservation survives kill -9 before it is used.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { NumberStore } from '../../protocol/store.js';

export class FileNumberStore implements NumberStore {
  private readonly m: Map<string, number>;

  constructor(private readonly file: string) {
    this.m = new Map(existsSync(file) ? Object.entries(JSON.parse(readFileSync(file, 'utf8')) as Record<string, number>) : []);
  }

  async get(key: string): Promise<number | undefined> {
    return this.m.get(key);
  }

  async set(key: string, value: number): Promise<void> {
    this.m.set(key, value);
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.m)), { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
