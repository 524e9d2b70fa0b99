/** `kagi audit`: who changed what, when. */
import { int, parse } from '../args.js';
import { TARGET_HELP, TARGET_OPTIONS, withTarget } from '../remote-admin.js';
import type { AuditRow } from '../../servers/store/store.js';

export const auditHelp = `usage: kagi audit [--limit N] [--json] [--data DIR | --store URL | --remote FILE]

Lists the newest changes operators made to the tables (default 50), oldest
first: when, who (local:USER@HOST for the CLI on a data dir or store,
admin:ID for a remote admin), the operation (device.add,
device.provision, device.revoke, user.add, vpn.add, vpn.set, vpn.grant,
vpn.revoke, vpn.rekey, vpn.delete, admin.add, admin.revoke) and its
arguments. Passwords and keys are never recorded.

${TARGET_HELP}`;

export async function audit(args: string[]): Promise<number> {
  const { values: v } = parse(args, { ...TARGET_OPTIONS, limit: { type: 'string' }, json: { type: 'boolean', default: false } }, 0);
  const limit = int(v.limit, 'limit', 50);
  const rows = (await withTarget(v, (t) => t.run('audit', { limit }))) as AuditRow[];
  if (v.json) {
    console.log(JSON.stringify(rows.map((r) => ({ at: new Date(r.at).toISOString(), actor: r.actor, op: r.op, detail: JSON.parse(r.detail) as unknown })), null, 2));
    return 0;
  }
  for (const r of rows) console.log(`${new Date(r.at).toISOString()}  ${r.actor}  ${r.op}  ${r.detail}`);
  if (rows.length === 0) console.log('no changes recorded');
  return 0;
}
