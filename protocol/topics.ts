/** MQTT topics of protocol v1 (DESIGN §5), one tree. */
export type Service = 'auth' | 'config' | 'keys';
export const SERVICES: readonly Service[] = ['auth', 'config', 'keys'];
export const ROOT = 'kagi/v1';

export const topics = {
  service: (svc: Service, op: string) => `${ROOT}/svc/${svc}/${op}`,
  serviceAll: (svc: Service) => `${ROOT}/svc/${svc}/+`,
  inbox: (deviceId: string) => `${ROOT}/dev/${deviceId}/in`,
  state: (deviceId: string) => `${ROOT}/dev/${deviceId}/state`,
  vpnMember: (vpnId: string, deviceId: string) => `${ROOT}/vpn/${vpnId}/${deviceId}`,
  vpnAll: (vpnId: string) => `${ROOT}/vpn/${vpnId}/all`,
};

/** Split a topic of our tree; undefined for anything else. */
export function parseTopic(topic: string): { area: 'svc' | 'dev' | 'vpn'; a: string; b: string } | undefined {
  const p = topic.split('/');
  if (p.length !== 5 || p[0] !== 'kagi' || p[1] !== 'v1') return undefined;
  const area = p[2];
  if (area !== 'svc' && area !== 'dev' && area !== 'vpn') return undefined;
  return { area, a: p[3]!, b: p[4]! };
}

/**
 * The service topics a device (or an admin identity) publishes to, per
 * service: the config server's front door (config and join requests,
 * remote admin) and the reply topics its channel messages and key
 * acknowledgements go to. Nothing else of `svc/` is a device's: the
 * embedded broker refuses a device's publish anywhere else (broker/publish-policy.ts).
 */
export const DEVICE_OPS: Readonly<Record<Service, readonly string[]>> = {
  auth: [],
  config: ['request', 'join', 'admin', 'reply'],
  keys: ['reply'],
};

/** Payloads of a device's state topic: 'online', or 'offline' (its will or its goodbye). */
export const STATE_PAYLOADS: readonly string[] = ['online', 'offline'];

/** A device's state message: which device says it is online or offline; undefined for any other topic or payload. */
export function parseState(topic: string, payload: Uint8Array): { deviceId: string; state: 'online' | 'offline' } | undefined {
  const t = parseTopic(topic);
  if (t?.area !== 'dev' || t.b !== 'state' || payload.length > 7) return undefined;
  const state = new TextDecoder().decode(payload);
  return state === 'online' || state === 'offline' ? { deviceId: t.a, state } : undefined;
}
