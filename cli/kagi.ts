#!/usr/bin/env node
/**
 * The `kagi` command. Each subcommand is one module; cli/run.ts
 * dispatches. Exit codes: 0 ok, 1 runtime failure, 2 usage error.
 */
import { run } from './run.js';

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  // run() catches what a command throws; this is only a last resort.
  (err: unknown) => {
    console.error(`kagi: ${String(err)}`);
    process.exit(1);
  },
);
