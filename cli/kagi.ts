#!/usr/bin/env node
/**
 * The `kagi` command. Each subcommand is one module; this file only
 * dispatches. Exit codes: 0 ok, 1 runtime failure, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './args.js';
import { agent, agentHelp } from './commands/agent.js';
import { bundle, bundleHelp } from './commands/bundle.js';
import { provision, provisionHelp } from './commands/provision.js';
import { device, deviceHelp, user, userHelp, vpn, vpnHelp } from './commands/admin.js';
import { demo, demoHelp } from './commands/demo.js';
import { status, statusHelp } from './commands/status.js';
import { up, upHelp } from './commands/up.js';

const USAGE = `kagi — keying and access control plane for fleets of small devices

usage: kagi <command> [options]

commands:
  up          run the control plane (embedded broker + auth, config, key services)
  device      add a device and write its bundle; revoke one
  provision   make and register many devices from a CSV
  user add    add a user (password from standard input)
  vpn         add a VPN, grant a user
  agent       run a device agent from its bundle
  bundle      build the agent for a board profile as one file
  status      devices and VPNs (--json)
  demo        the whole first story in one process on ephemeral ports
  version     print the version

Every command takes --help; admin commands take --data DIR (default ./kagi-data)
and --store postgres://user@host/db[?schema=NAME] to keep the tables in PostgreSQL.`;

const commands: Record<string, { help: string; run(args: string[]): Promise<number> }> = {
  up: { help: upHelp, run: up },
  device: { help: deviceHelp, run: device },
  user: { help: userHelp, run: user },
  vpn: { help: vpnHelp, run: vpn },
  agent: { help: agentHelp, run: agent },
  bundle: { help: bundleHelp, run: bundle },
  provision: { help: provisionHelp, run: provision },
  status: { help: statusHelp, run: status },
  demo: { help: demoHelp, run: demo },
  version: {
    help: 'usage: kagi version\n\nPrints the installed kagi version.',
    async run() {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      console.log(pkg.version);
      return 0;
    },
  },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    console.log(USAGE);
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`kagi: unknown command '${name}'\n\n${USAGE}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(cmd.help);
    return 0;
  }
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`kagi ${process.argv[2] ?? ''}: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
