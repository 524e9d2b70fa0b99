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
