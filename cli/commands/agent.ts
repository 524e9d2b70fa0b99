/** kagi agent FILE: run a device agent from its bundle. */
import { readFileSync } from 'node:fs';
import { parse, readStdinLine, UsageError } from '../args.js';
import { parseBundle } from '../../device/bundle.js';
import { TerminalAgent } from '../../device/terminal.js';
import { nodePlatform } from '../../runtime/node/platform.js';
import { Tunnels, parseListen, parseTarget } from '../../runtime/node/tunnel.js';

export const agentHelp = `usage: kagi agent FILE [--user ID --password-stdin] [--listen VPN=LOCALPORT:PEER]... [--target VPN=HOST:PORT]...

Runs the device agent of bundle FILE: connects to the broker named in the
bundle (or --broker URL), gets its config, joins as --user (password from
standard input) or with the bundle's preset credentials, and carries TCP:
  --listen VPN=LOCALPORT:PEER  accept on 127.0.0.1:LOCALPORT, tunnel to device PEER
  --target VPN=HOST:PORT       where to connect streams arriving on VPN
                               (default 127.0.0.1:<the VPN's port>)
Sequence counters persist in FILE.state. Stops on SIGINT/SIGTERM.

options:
  --broker URL       override the bundle's broker URL
  --no-broker-auth   send no CONNECT password (a broker that does not check it)
  --verbose          debug logging`;

export async function agent(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {
    user: { type: 'string' }, 'password-stdin': { type: 'boolean', default: false },
    listen: { type: 'string', multiple: true, default: [] }, target: { type: 'string', multiple: true, default: [] },
    broker: { type: 'string' }, 'no-broker-auth': { type: 'boolean', default: false }, verbose: { type: 'boolean', default: false },
  }, 1);
  const file = positionals[0]!;
  let bundle;
  try {
    bundle = parseBundle(JSON.parse(readFileSync(file, 'utf8')));
  } catch (e) {
    throw new UsageError(`${file}: ${(e as Error).message}`);
  }
  if (v.user && !v['password-stdin']) throw new UsageError('--user needs --password-stdin');
  const listens = v.listen.map(parseListen);
  const targets = v.target.map(parseTarget);
  const user = v.user ?? bundle.user;
  const password = v.user ? await readStdinLine(`password for ${v.user}`) : bundle.password;
  const log = (level: string, msg: string) => {
    if (level !== 'debug' || v.verbose) console.log(`${level}: ${msg}`);
  };
  let tunnels: Tunnels | undefined;
  const a = new TerminalAgent(
    bundle,
    nodePlatform({ brokerUrl: v.broker ?? bundle.broker, stateFile: `${file}.state`, brokerAuth: !v['no-broker-auth'], log }),
    { onState: (s) => console.log(`state: ${s}`), onData: (vpn, from, p) => tunnels?.onData(vpn, from, p) },
  );
  tunnels = new Tunnels(a, listens, targets);
  await a.start();
  await a.configure();
  if (user && password) {
    const vpns = await a.join(user, password);
    for (const x of vpns) console.log(`joined ${x.id} (${x.protocol}/${x.port}, epoch ${x.epoch})`);
    const ports = await tunnels.start();
    listens.forEach((l, i) => console.log(`listening on 127.0.0.1:${ports[i]} → ${l.peer} over ${l.vpn}`));
  } else {
    console.log('configured; no user given, so not joining any VPN');
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await tunnels.stop();
  await a.stop();
  return 0;
}
