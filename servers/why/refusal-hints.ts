/**
 * What an operator can do about each refusal the auth server (and the
 * config server: `keys`) gives, by code (docs/protocol.md, "Refusals and
 * the password check"): the hint `kagi why` prints on a failed
 * authentication step. One entry per code, so a new code without a hint
 * fails test/servers/why.test.ts.
 */

/** Who the hint is about: the device, the user it joined (or tried to join) as, the VPN asked about. */
export interface HintContext {
  device: string;
  user: string | null;
  vpn: string | null;
  /** For a plaintext terminal: the relay and port it joins through. */
  relay: { id: string; port: string } | null;
}

const agent = (c: HintContext) => (c.relay ? `restart the plaintext terminal behind ${c.relay.id}/${c.relay.port}` : `restart the agent (kagi agent ${c.device}.json --user ${c.user ?? 'USER'} --password-stdin)`);

export const REFUSAL_HINTS: Record<string, (c: HintContext) => string> = {
  'malformed': () => 'the request did not decode: the agent and the control plane speak different versions; update the agent',
  'unknown-device': (c) => `register it: kagi device add ${c.device} --mac MAC --out ${c.device}.json`,
  'not-a-device': (c) => `${c.device} is an admin identity: use it with --remote, never as an agent`,
  'revoked': (c) => `${c.device} is revoked for good: register the device again under a new id (kagi device add NEW --mac MAC)`,
  'credential': (c) => `the key in the device's file is not the one registered for ${c.device}: use the file kagi device add wrote, or register it again under a new id`,
  'stale': () => "the device's clock was off by more than a minute: the agent corrects it from the answer and asks again; if this repeats, check its clock",
  'replay': (c) => `a request of ${c.device} was seen before: its counters went back (a restored or copied ${c.device}.json.state) or its traffic was replayed; restart the agent, and look for a copy of the device file if it repeats`,
  'relay-binding': (c) => `the plaintext terminal is not bound to the relay port it came through: plug it into its own port, or register it there (kagi device add ${c.device} --kind plaintext --relay RELAY --port PORT)`,
  'mac': (c) => `the MAC the device sent is not the one registered for ${c.device}: fix the mac in its file, or register the device with its real MAC`,
  'password': (c) => `wrong user id or password: ${agent(c)} with the right password (kagi user passwd ${c.user ?? 'USER'} --password-stdin sets a new one)`,
  'throttled': (c) => `too many failed password attempts for ${c.user ?? 'the user'} or from ${c.device}: the agent asks again by itself after the wait; give it the right password (${agent(c)})`,
  'busy': () => "the auth server's password queue was full: the agent asks again by itself after the time it was given",
  'no-vpn': (c) => `user ${c.user ?? 'USER'} is granted no VPN: kagi vpn grant ${c.vpn ?? 'VPN'} ${c.user ?? 'USER'}`,
  'unknown-op': () => 'the config server asked the auth server for an operation it does not know: run the same kagi version on every instance',
  'ticket-unknown': (c) => `its resumption ticket is not known (the user's password changed, or the tickets were dropped): ${agent(c)}`,
  'ticket-expired': (c) => `its resumption ticket expired (kagi up --ticket-lifetime): ${agent(c)}`,
  'ticket-invalid': (c) => `its resumption ticket does not verify: ${agent(c)}`,
  'ticket-reused': (c) => `a retired ticket was presented again (a copied ticket file), so the pair's tickets were revoked: ${agent(c)}, and look for the copy of ${c.device}.json.tickets`,
  'keys': () => 'the key server did not deliver the keys: see its log (kagi up); the agent asks again by itself',
};

/** The hint for a refusal code; a code this kagi does not know still gets one. */
export function refusalHint(code: string, c: HintContext): string {
  const h = Object.hasOwn(REFUSAL_HINTS, code) ? REFUSAL_HINTS[code]! : undefined;
  return h ? h(c) : `refused '${code}': see the auth server's log`;
}
