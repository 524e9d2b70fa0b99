/**
 * The main of a Node board bundle (kagi bundle --profile node-…): the same
 * agent as `kagi agent`, with the board profile baked in by the build.
 *
 *   node agent.js DEVICE.json [kagi agent options]
 */
import { agent, agentHelp } from './commands/agent.js';
import { UsageError } from './args.js';
import type { BoardProfile } from '../device/board-profile.js';
import { detach } from '../device/detach.js';

declare const __KAGI_BOARD__: { profile: BoardProfile; device: unknown } | undefined;

const profile = typeof __KAGI_BOARD__ === 'undefined' ? undefined : __KAGI_BOARD__.profile;
const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h') || args.length === 0) {
  console.log(`${agentHelp.replace(/kagi agent FILE/g, 'node agent.js FILE')}\n\nThis bundle was built for board profile ${profile?.name ?? '(none)'}; a relay uses its ports without --profile.`);
  process.exit(args.length === 0 ? 2 : 0);
}
async function main(): Promise<never> {
  try {
    process.exit(await agent(args, profile));
  } catch (e) {
    console.error(`kagi agent (${profile?.name ?? 'board'}): ${(e as Error).message}`);
    process.exit(e instanceof UsageError ? 2 : 1);
  }
}
detach(main(), 'kagi agent', (level, msg) => console.error(`${level}: ${msg}`), 'warn');
