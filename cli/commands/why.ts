/** `kagi why DEVICE [VPN]`: why is this device (not) in that VPN (servers/why/explain.ts). */
import { int, parse, UsageError } from '../args.js';
import { TARGET_HELP, TARGET_OPTIONS, withTarget } from '../remote-admin.js';
import { ID_PATTERN } from '../../protocol/limits.js';
import type { WhyResult, WhyStep } from '../../servers/why/explain.js';

export const whyHelp = `usage: kagi why DEVICE [VPN] [--json] [--evict-after N] [--data DIR | --store URL | --remote FILE]

Walks the path of DEVICE into VPN (or into every VPN its user is granted or
it is a member of) and prints one line per step, with its verdict and the
evidence from the tables:

  device          registered, revoked, kind (a plaintext terminal: its relay port)
  authentication  its last accepted authentication, and its last refusal
                  (code, reason and time) if that came after
  user            the user it joined as, and the user's grants
  vpn             the VPN and its state
  grant           whether the user is granted the VPN
  liveness        ACTIVE, MISSING (N of M polls missed), EVICTED (when, why),
                  or not a member
  network         what each network device holds for it: broker ACL,
                  nftables set, dynsec roles
  relay-port      a plaintext terminal's relay port: FORWARDING or RESTRICTED
                  and why
  bandwidth       the planned rate, or CUT and by which priorities

The first failing step is marked with '>' and what would change it (a
command, or what the agent does by itself).

  --json             the whole result as JSON (steps with verdict, evidence,
                     hint, marked; and the marked step)
  --evict-after N    the missed polls kagi up evicts after, for the MISSING
                     line (default 3; with --remote the control plane's own)
${TARGET_HELP}`;

const VERDICT = { ok: 'ok', fail: 'FAIL', warn: 'warn', info: '-' } as const;

export async function why(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { ...TARGET_OPTIONS, json: { type: 'boolean', default: false }, 'evict-after': { type: 'string' } }, 1, 2);
  const [device, vpn] = positionals as [string, string | undefined];
  for (const x of [device, vpn]) if (x !== undefined && !ID_PATTERN.test(x)) throw new UsageError(`'${x}' is not an id (letters, digits, . _ : -; at most 64)`);
  const evictAfter = int(v['evict-after'], 'evict-after', 3);
  if (evictAfter < 1) throw new UsageError('--evict-after must be a positive whole number of polls');
  if (v['evict-after'] !== undefined && v.remote) throw new UsageError('--evict-after is for --data or --store: with --remote the control plane says');
  const r = (await withTarget(v, (t) => t.run('why', { device, ...(vpn ? { vpn } : {}), ...(v.remote ? {} : { evictAfter }) }))) as WhyResult;
  if (v.json) {
    console.log(JSON.stringify(r, null, 2));
    return 0;
  }
  console.log(`why ${r.device} (tables read ${r.at})`);
  printSteps(r.steps);
  for (const p of r.vpns) {
    console.log(`VPN ${p.vpn}`);
    printSteps(p.steps);
  }
  if (r.vpns.length === 0 && !r.marked) console.log('  no VPN: its user is granted none and it is a member of none');
  console.log(r.marked ? `first to fix: ${r.marked.step}${r.marked.vpn ? ` (${r.marked.vpn})` : ''}: ${r.marked.hint ?? r.marked.evidence}` : 'nothing fails on the path');
  return 0;
}

function printSteps(steps: WhyStep[]): void {
  for (const s of steps) {
    console.log(`${s.marked ? '>' : ' '} ${VERDICT[s.verdict].padEnd(4)} ${s.step.padEnd(14)} ${s.evidence}`);
    if (s.hint && s.verdict !== 'ok') console.log(`${' '.repeat(22)}-> ${s.hint}`);
  }
}
