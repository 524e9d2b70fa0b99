/** `kagi audit`: who changed what, when. */
import { DATA_OPTION, int, parse } from '../args.js';
import { hostname, userInfo } from 'node:os';
import { openStore } from '../../servers/store/open.js';

/** Who runs the CLI on a data dir or store, as the audit table names them. */
export const localActor = (): string => `local:${userInfo().username}@${hostname()}`;

export const auditHelp = `usage: kagi audit [--limit N] [--json] [--data DIR] [--store URL]

Lists the newest changes operators made to the tables (default 50), oldest
first: when, who (local:USER@HOST for the CLI on a data dir or store), the
operation (device.add, device.revoke, user.add, vpn.add, vpn.set,
vpn.grant, vpn.revoke, vpn.rekey, vpn.delete) and its arguments. Passwords
and keys are never recorded.`;

export async function audit(args: string[]): Promise<number> {
  const { values: v } = parse(args, { ...DATA_OPTION, limit: { type: 'string' }, json: { type: 'boolean', default: false } }, 0);
  const s = await openStore(v.data, v.store);
  try {
    const rows = await s.auditLog(int(v.limit, 'limit', 50));
    if (v.json) {
      console.log(JSON.stringify(rows.map((r) => ({ at: new Date(r.at).toISOString(), actor: r.actor, op: r.op, detail: JSON.parse(r.detail) as unknown })), null, 2));
      return 0;
    }
    for (const r of rows) console.log(`${new Date(r.at).toISOString()}  ${r.actor}  ${r.op}  ${r.detail}`);
    if (rows.length === 0) console.log('no changes recorded');
    return 0;
  } finally {
    await s.close();
  }
}
