/**
 * The message types of protocol v1, one place. Each type has a kind that
 * decides how it is sealed (see sealed.ts):
 *  - sealed:  HPKE auth mode to the receiver's static key; `enc` present.
 *  - reply:   sealed under a key exported from the request's HPKE context,
 *             so only the requester can open it and only for that request.
 *  - channel: ChaCha20-Poly1305 under a per-direction channel key between a
 *             device and one service (see channel.ts): polls, liveness,
 *             key updates.
 * Numbers are wire values: never renumber, only add.
 */
import { KagiError } from './errors.js';

export type MessageKind = 'sealed' | 'reply' | 'channel';

export const MESSAGE_TYPES = {
  'config.request': { code: 1, kind: 'sealed' }, // S101: MAC + device credential
  'config.response': { code: 2, kind: 'reply' }, // S104: device config
  'join.request': { code: 3, kind: 'sealed' }, // S105: user join (inner blob sealed to auth)
  'join.response': { code: 4, kind: 'reply' }, // S110: VPN memberships
  'keys.deliver': { code: 5, kind: 'sealed' }, // 3a: VPN info + group key
  'keys.ack': { code: 6, kind: 'reply' }, // terminal acknowledges keys
  'poll': { code: 7, kind: 'channel' }, // S401: config → holder, the members' VPNs and epochs
  'poll.reply': { code: 8, kind: 'channel' }, // S402: holder → config, what it holds
  'continue': { code: 9, kind: 'channel' }, // S403: holder → config, not polled for a while
  'leave': { code: 10, kind: 'channel' }, // holder → config, explicit leave (agent shutting down)
  'error': { code: 11, kind: 'reply' }, // a refusal, answering a request
  'service.request': { code: 12, kind: 'sealed' }, // service-to-service (config → auth, config → keys)
  'service.response': { code: 13, kind: 'reply' },
  'notice': { code: 14, kind: 'sealed' }, // config → member: VPN deleted / member left (S405)
  'notice.ack': { code: 15, kind: 'reply' },
  'keys.update': { code: 16, kind: 'channel' }, // keys → holder: a new epoch wrapped under the keys channel
  'keys.updated': { code: 17, kind: 'channel' }, // holder → keys: acknowledges an update
  'keys.fetch': { code: 18, kind: 'channel' }, // holder → keys: saw a newer epoch, send the current one
  'admin.request': { code: 19, kind: 'sealed' }, // admin → config: one admin operation { op, args }
  'admin.response': { code: 20, kind: 'reply' }, // config → admin: { result }
} as const satisfies Record<string, { code: number; kind: MessageKind }>;

export type MessageType = keyof typeof MESSAGE_TYPES;

const byCode = new Map<number, { name: MessageType; kind: MessageKind }>(
  Object.entries(MESSAGE_TYPES).map(([name, d]) => [d.code, { name: name as MessageType, kind: d.kind }]),
);

export function typeCode(name: MessageType): number {
  return MESSAGE_TYPES[name].code;
}

/** Look up a wire code; unknown codes are the peer's error, not ours. */
export function typeByCode(code: number): { name: MessageType; kind: MessageKind } {
  const t = byCode.get(code);
  if (!t) throw new KagiError('type', `unknown message type ${code}`);
  return t;
}
