/** `kagi provision`: many devices from a CSV, with progress, resumable. */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writePrivateFile } from '../../servers/private-file.js';
import { join } from 'node:path';
import { parse, UsageError } from '../args.js';
import { BROKER_TLS_HELP, BROKER_TLS_OPTIONS, RemoteSilentError, TARGET_HELP, TARGET_OPTIONS, brokerFor, withTarget } from '../remote-admin.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { parseDeviceCsv, provisionRow, type RowError, type RowResult } from '../../servers/provision.js';
import { listProfiles, loadProfile } from '../../runtime/node/board-profiles.js';
import { deviceTemplate } from '../bundle/build.js';
import { deviceCard, qrPng } from '../device-card.js';
import type { Crypto } from '../../protocol/crypto/backend.js';
import type { ProvisionRow } from '../../servers/provision.js';

export const provisionHelp = `usage: kagi provision --csv FILE --out DIR [--profile NAME] [--broker URL [--broker-pin HEX | --broker-ca FILE]] [--data DIR | --store URL | --remote FILE]

Makes and registers every device of a CSV file: one device file per row,
DIR/ID.json (mode 0600), as kagi device add writes. The first line names
the columns: id and mac, optionally kind (terminal, relay, external;
default terminal) and profile (a board profile, checked; --profile gives
a default). Blank lines and lines starting with # are skipped.

A row with a board profile also gets what the installer needs on site:
DIR/ID.png, a QR code of the device id and its public-key fingerprint
(kagi device card FILE shows the same on a terminal), and for QuickJS and
XS boards DIR/ID.agent.js, the flashable bundle with the device baked in
(0600: it holds the device key).

A bad row is reported with its line number and stops nothing else. Run it
again after fixing the file: rows already done are skipped, and a run cut
off halfway resumes (each file is written before its device is
registered). Exit 0 when every row is done, 1 when some row is not.

Each device is recorded in the audit table (device.provision). Key pairs
are made on this machine; with --remote only public keys travel, and a
control plane that stops answering stops the run (run it again to resume).

  --allow-duplicate-mac  register rows whose MAC another device already has
                     (refused per row by default)
  --broker URL       broker URL written into the device files (default: the
                     one kagi up last served on --data, or the --remote
                     file's; else mqtt://127.0.0.1:1883); mqtts://HOST:PORT
                     for TLS
${BROKER_TLS_HELP}
${TARGET_HELP}`;

/** A progress bar on a terminal, a line per tenth elsewhere (logs, CI). */
function progress(total: number, tty: boolean) {
  let lastTenth = -1;
  return (done: number) => {
    if (tty) {
      const width = 30;
      const fill = total ? Math.round((done / total) * width) : width;
      process.stderr.write(`\r[${'#'.repeat(fill)}${' '.repeat(width - fill)}] ${done}/${total}`);
      if (done === total) process.stderr.write('\n');
      return;
    }
    const tenth = total ? Math.floor((done * 10) / total) : 10;
    if (tenth !== lastTenth) process.stderr.write(`provision: ${done}/${total}\n`);
    lastTenth = tenth;
  };
}

/** Bundle templates, one build per profile for the whole batch. */
const templates = new Map<string, Promise<(device: Record<string, unknown>) => string>>();

/** The QR code and, for QuickJS/XS boards, the flashable bundle of a row with a profile; kept if already there. */
async function boardFiles(c: Crypto, row: ProvisionRow, out: string): Promise<void> {
  if (!row.profile) return;
  const file = JSON.parse(readFileSync(join(out, `${row.id}.json`), 'utf8')) as Record<string, unknown>;
  const png = join(out, `${row.id}.png`);
  if (!existsSync(png)) await qrPng(deviceCard(c, file).text, png);
  const profile = loadProfile(row.profile);
  const js = join(out, `${row.id}.agent.js`);
  if (profile.runtime === 'node' || existsSync(js)) return;
  if (!templates.has(profile.name)) templates.set(profile.name, deviceTemplate(profile));
  writePrivateFile(js, (await templates.get(profile.name)!)(file));
}

export async function provision(args: string[]): Promise<number> {
  const { values: v } = parse(args, { ...TARGET_OPTIONS, csv: { type: 'string' }, out: { type: 'string' }, profile: { type: 'string' }, broker: { type: 'string' }, 'allow-duplicate-mac': { type: 'boolean', default: false }, ...BROKER_TLS_OPTIONS }, 0);
  if (!v.csv) throw new UsageError('--csv FILE is required');
  if (!v.out) throw new UsageError('--out DIR is required');
  let text: string;
  try {
    text = readFileSync(v.csv, 'utf8');
  } catch (e) {
    throw new UsageError(`${v.csv}: ${(e as Error).message}`);
  }
  const profiles = new Set(listProfiles());
  if (v.profile && !profiles.has(v.profile)) throw new UsageError(`no board profile '${v.profile}' (known: ${[...profiles].join(', ')})`);
  const broker = brokerFor(v);
  const { rows, errors } = parseDeviceCsv(text, { profiles, ...(v.profile ? { defaultProfile: v.profile } : {}) });
  mkdirSync(v.out, { recursive: true, mode: 0o700 });
  const c = nodeCrypto();
  const counts: Record<RowResult, number> = { made: 0, resumed: 0, done: 0 };
  const failed: RowError[] = [...errors];
  const tick = progress(rows.length, process.stderr.isTTY === true);
  await withTarget(v, async (t) => {
    tick(0);
    for (const [i, row] of rows.entries()) {
      try {
        counts[await provisionRow(t, c, row, v.out!, broker, v['allow-duplicate-mac'])]++;
        await boardFiles(c, row, v.out!);
      } catch (e) {
        // The control plane gone quiet is not this row's fault: stop (a rerun resumes).
        if (e instanceof RemoteSilentError) throw e;
        failed.push({ line: row.line, message: (e as Error).message });
      }
      tick(i + 1);
    }
  });
  failed.sort((a, b) => a.line - b.line);
  for (const f of failed) console.log(`${v.csv}:${f.line}: ${f.message}`);
  console.log(`${counts.made + counts.resumed} provisioned${counts.resumed ? ` (${counts.resumed} resumed from an interrupted run)` : ''}, ${counts.done} already done, ${failed.length} row(s) not done`);
  return failed.length ? 1 : 0;
}
