#!/usr/bin/env node
/**
 * The `kagi` command. Each subcommand is one module; this file only
 * dispatches. Exit codes: 0 ok, 1 runtime failure, 2 usage error.
 */
import { readFileSync } from 'node:fs';

const USAGE = `kagi — keying and access control plane for fleets of small devices

usage: kagi <command> [options]

commands:
  demo        run the whole system in one process (arrives with the control plane)
  version     print the version
  help        show this help

Every command takes --help.`;

const commands: Record<string, { help: string; run(args: string[]): Promise<number> }> = {
  demo: {
    help: `usage: kagi demo

Runs broker, services and agents on loopback ephemeral ports and prints each
step of the patent's stories. Not yet: the demo arrives with the control
plane (issue 4); today only the protocol core exists.`,
    async run() {
      console.log('kagi demo: the demo arrives with the control plane.');
      console.log('Today kagi has its protocol core (wire format, HPKE, sealed messages, VPN frames); run `npm test` to see it proven against the published vectors.');
      return 0;
    },
  },
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
    console.error(`kagi: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
