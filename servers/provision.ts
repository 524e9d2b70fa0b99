/**
 * Field provisioning in batches (`kagi provision --csv`): many devices made
 * and registered from one CSV, each row on its own. A bad row is reported
 * with its line number and stops nothing else; a second run skips what is
 * done. The device file is written (atomically, 0600) before the device is
 * registered, so a run cut off between the two resumes from the file and
 * never registers a key that was not saved.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Crypto } from '../protocol/crypto/backend.js';
import { equalCT, fromHex, toHex } from '../protocol/bytes.js';
import { ID_PATTERN, MAC_PATTERN } from '../protocol/limits.js';
import { isService } from './service-host.js';
import type { AdminRunner } from './admin-ops.js';
import { writePrivateFile } from './private-file.js';
import { ALL_MEMBERS } from '../protocol/vpn-frame.js';
import type { FileBroker } from './data-dir.js';

export interface ProvisionRow {
  /** 1-based line in the CSV file. */
  line: number;
  id: string;
  mac: string;
  kind: 'terminal' | 'relay' | 'external';
  profile?: string;
}

export interface RowError {
  line: number;
  message: string;
}

const KINDS = ['terminal', 'relay', 'external'] as const;

/** One CSV line into fields (RFC 4180 quotes: "a,b" and "" for a quote). */
export function csvFields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') (cur += '"'), i++;
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') out.push(cur.trim()), (cur = '');
    else cur += ch;
  }
  out.push(cur.trim());
  return out;
}

/**
 * Rows and row errors of a device CSV: a header naming at least id and mac
 * (kind, profile optional, any order); blank lines and # comments skipped.
 */
export function parseDeviceCsv(text: string, o: { profiles?: Set<string>; defaultProfile?: string } = {}): { rows: ProvisionRow[]; errors: RowError[] } {
  const lines = text.split(/\r?\n/);
  const headerAt = lines.findIndex((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  if (headerAt < 0) return { rows: [], errors: [{ line: 1, message: 'no header: the first line must name the columns, e.g. id,mac,kind,profile' }] };
  const header = csvFields(lines[headerAt]!).map((h) => h.toLowerCase());
  const col = (name: string) => header.indexOf(name);
  const missing = ['id', 'mac'].filter((c) => col(c) < 0);
  if (missing.length) return { rows: [], errors: [{ line: headerAt + 1, message: `the header must name ${missing.join(' and ')} (it has ${header.join(', ')})` }] };
  const rows: ProvisionRow[] = [];
  const errors: RowError[] = [];
  const seen = new Map<string, number>();
  for (let i = headerAt + 1; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === '' || raw.startsWith('#')) continue;
    const line = i + 1;
    const f = csvFields(raw);
    const get = (name: string) => (col(name) >= 0 ? (f[col(name)] ?? '') : '');
    const id = get('id');
    const mac = get('mac').toLowerCase();
    const kind = get('kind') || 'terminal';
    const profile = get('profile') || o.defaultProfile;
    const problem =
      f.length > header.length ? `${f.length} fields, the header has ${header.length}`
      : !ID_PATTERN.test(id) ? `id '${id}' must be 1-64 of A-Z a-z 0-9 . _ : -`
      : isService(id) || id === 'broker' || id === ALL_MEMBERS ? `id '${id}' is reserved for a service`
      : !MAC_PATTERN.test(mac) ? `MAC '${mac}' must look like 02:00:00:00:00:01`
      : !(KINDS as readonly string[]).includes(kind) ? `kind '${kind}' must be terminal, relay or external (plaintext terminals: kagi device add --relay --port)`
      : profile && o.profiles && !o.profiles.has(profile) ? `no board profile '${profile}'`
      : seen.has(id) ? `id '${id}' repeats line ${seen.get(id)}`
      : null;
    if (problem) {
      errors.push({ line, message: problem });
      continue;
    }
    seen.set(id, line);
    rows.push({ line, id, mac, kind: kind as ProvisionRow['kind'], ...(profile ? { profile } : {}) });
  }
  return { rows, errors };
}

export type RowResult = 'made' | 'resumed' | 'done';

/** Make and register one device, or find it already done. Throws (with a message for the operator) when it conflicts. */
export async function provisionRow(admin: AdminRunner, c: Crypto, row: ProvisionRow, outDir: string, broker: string | FileBroker, allowDuplicateMac = false): Promise<RowResult> {
  const b: FileBroker = typeof broker === 'string' ? { broker } : broker;
  const file = join(outDir, `${row.id}.json`);
  const existing = (await admin.run('device.get', { id: row.id })) as { mac: string; publicKey: Uint8Array; revoked: boolean } | null;
  let bundle: Record<string, unknown> | undefined;
  if (existsSync(file)) {
    try {
      bundle = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`${file} exists but is not a device file (${(e as Error).message}); move it away`);
    }
    if (bundle.id !== row.id || bundle.mac !== row.mac || bundle.kind !== row.kind) throw new Error(`${file} exists for another device (${String(bundle.id)}, ${String(bundle.mac)}, ${String(bundle.kind)}); move it away`);
  }
  const publicKey = bundle && typeof bundle.secretKey === 'string' ? c.publicKey(fromHex(bundle.secretKey)) : undefined;
  if (existing) {
    if (existing.revoked) throw new Error(`device ${row.id} is revoked; choose a new id`);
    if (publicKey && existing.mac === row.mac && equalCT(existing.publicKey, publicKey)) return 'done';
    throw new Error(`device ${row.id} is already registered ${existing.mac !== row.mac ? `with MAC ${existing.mac}` : 'with another key'}${publicKey ? '' : ` and ${file} is missing`}; not touching it`);
  }
  const register = (pk: Uint8Array) => admin.run('device.provision', { id: row.id, mac: row.mac, kind: row.kind, publicKey: pk, ...(row.profile ? { profile: row.profile } : {}), ...(allowDuplicateMac ? { allowDuplicateMac } : {}) });
  if (publicKey) {
    // A run cut off after writing the file: register the key it saved.
    await register(publicKey);
    return 'resumed';
  }
  const kp = c.generateKeyPair();
  const out = { kagi: 1, id: row.id, mac: row.mac, kind: row.kind, secretKey: toHex(kp.secretKey), services: await admin.services(), broker: b.broker, ...(b.brokerTls ? { brokerTls: b.brokerTls } : {}), ...(row.profile ? { profile: row.profile } : {}) };
  writePrivateFile(file, `${JSON.stringify(out, null, 2)}\n`);
  await register(kp.publicKey);
  return 'made';
}
