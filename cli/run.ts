/**
 * The `kagi` command's dispatch: each subcommand is one module, loaded only
 * when it runs. cli/kagi.ts is the executable that calls run() and exits.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './args.js';

const USAGE = `kagi — keying and access control plane for fleets of small devices

usage: kagi <command> [options]

commands:
  up          run the control plane (embedded broker + auth, config, key services)
  init        make a control plane's data dir without starting it
  device      add a device and write its bundle; revoke one
  provision   make and register many devices from a CSV
  user add    add a user (password from standard input)
  vpn         add, set, grant, revoke, rekey and delete VPNs
  admin       add, revoke and list operator identities for --remote; login to the console
  agent       run a device agent from its bundle
  bundle      build the agent for a board profile as one file
  status      devices and VPNs (--json)
  why         why a device is (not) in a VPN: each step, the first failing one marked
  audit       who changed what, when
  demo        the whole first story in one process on ephemeral ports
  version     print the version

Every command takes --help; admin commands (device, provision, user, vpn,
admin, status, why, audit) take --data DIR (default ./kagi-data; made only by
kagi up or kagi init, refused when it holds no kagi data) and
--store postgres://user@host/db[?schema=NAME] for the tables in PostgreSQL,
or --remote admin.json to run on a running control plane over its broker.`;

interface Command {
  help: string;
  run(args: string[]): Promise<number>;
}

/**
 * Each command's module is loaded only when it runs: an admin command
 * should not pay for rollup (bundle), QR codes (provision) or the services.
 */
const commands: Record<string, () => Promise<Command>> = {
  up: async () => import('./commands/up.js').then((m) => ({ help: m.upHelp, run: m.up })),
  init: async () => import('./commands/init.js').then((m) => ({ help: m.initHelp, run: m.init })),
  device: async () => import('./commands/admin.js').then((m) => ({ help: m.deviceHelp, run: m.device })),
  user: async () => import('./commands/admin.js').then((m) => ({ help: m.userHelp, run: m.user })),
  vpn: async () => import('./commands/admin.js').then((m) => ({ help: m.vpnHelp, run: m.vpn })),
  admin: async () => import('./commands/admin.js').then((m) => ({ help: m.adminHelp, run: m.admin })),
  agent: async () => import('./commands/agent.js').then((m) => ({ help: m.agentHelp, run: (a: string[]) => m.agent(a) })),
  bundle: async () => import('./commands/bundle.js').then((m) => ({ help: m.bundleHelp, run: m.bundle })),
  provision: async () => import('./commands/provision.js').then((m) => ({ help: m.provisionHelp, run: m.provision })),
  audit: async () => import('./commands/audit.js').then((m) => ({ help: m.auditHelp, run: m.audit })),
  status: async () => import('./commands/status.js').then((m) => ({ help: m.statusHelp, run: m.status })),
  why: async () => import('./commands/why.js').then((m) => ({ help: m.whyHelp, run: m.why })),
  demo: async () => import('./commands/demo.js').then((m) => ({ help: m.demoHelp, run: m.demo })),
  version: async () => ({
    help: 'usage: kagi version\n\nPrints the installed kagi version.',
    async run() {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      console.log(pkg.version);
      return 0;
    },
  }),
};

async function dispatch(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    console.log(USAGE);
    return 0;
  }
  const load = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!load) {
    console.error(`kagi: unknown command '${name}'\n\n${USAGE}`);
    return 2;
  }
  const cmd = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(cmd.help);
    return 0;
  }
  return cmd.run(rest);
}

/**
 * Run `kagi ARGV` and give its exit code: 0 ok, 1 runtime failure, 2 usage
 * error; a thrown error is printed as one line. It never exits the
 * process (cli/kagi.ts does, with this code), so a test can run a command
 * in-process (test/helpers/cli.ts) and see exactly what a user would.
 */
export async function run(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (err) {
    console.error(`kagi ${argv[0] ?? ''}: ${err instanceof Error ? err.message : String(err)}`);
    return err instanceof UsageError ? 2 : 1;
  }
}
