/**
 * kagi init: make a control plane's data dir (and its tables) without
 * starting it, for provisioning before the first `kagi up`. Every other
 * admin command refuses a dir that holds no kagi data.
 */
import { resolve } from 'node:path';
import { DATA_OPTION, parse } from '../args.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import { openStore } from '../../servers/store/open.js';
import { redactUrl } from '../../servers/store/postgres.js';
import { loadServiceKeys } from '../../servers/identity.js';
import { hasKagiData } from '../../servers/data-dir.js';

export const initHelp = `usage: kagi init [--data DIR] [--store postgres://…]

Makes a control plane's data dir DIR (default ./kagi-data, mode 0700): the
services' keys (keys.json) and the tables (kagi.db, or the schema of
--store), all 0600. kagi up does the same on its first start; init is for
adding users, VPNs and devices before the first start. Run on a dir that
already holds kagi data, it changes nothing (it only migrates the tables).

Every other admin command refuses a dir without kagi data, so a mistyped
--data is an error rather than an empty fleet.`;

export async function init(args: string[]): Promise<number> {
  const { values: v } = parse(args, DATA_OPTION, 0);
  const existed = hasKagiData(v.data);
  loadServiceKeys(v.data, nodeCrypto());
  const store = await openStore(v.data, v.store);
  await store.close();
  const where = v.store ? `keys in ${resolve(v.data)}, tables in ${redactUrl(v.store)}` : resolve(v.data);
  console.log(existed ? `kagi data already in ${where}: nothing changed` : `kagi data made in ${where}`);
  return 0;
}
