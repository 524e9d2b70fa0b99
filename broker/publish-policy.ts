/**
 * What a device may publish on the embedded broker, checked on every
 * PUBLISH before anything else is done with it (no store read, no crypto):
 *
 *   topic   a real topic of the protocol: the service ops a device uses
 *           (protocol/topics.ts DEVICE_OPS), its own state topic, or a
 *           VPN it is an active member of, addressed to `all` or to a
 *           member of that VPN;
 *   retain  only on its own state topic (the one retained message of the
 *           protocol); everywhere else a retained message would be held
 *           by the broker for nobody;
 *   size    at most the largest payload of the topic's class: an envelope
 *           for service topics, a VPN frame for VPN topics, 'offline' for
 *           the state topic.
 *
 * A pure function of the topic, the flags, the payload's length and the
 * broker ACL: the fuzz test throws any of them at it.
 */
import { LIMITS } from '../protocol/limits.js';
import { DEVICE_OPS, parseTopic, SERVICES, STATE_PAYLOADS, type Service } from '../protocol/topics.js';

/** Where a device's publish goes, by what it costs the broker and the services. */
export type TopicClass = 'control' | 'state' | 'frame';

/** Why a publish is refused: a fixed set, so it can label a metric. */
export type PublishRefusal = 'topic' | 'retain' | 'size' | 'acl';

/** The largest payload of each class (bytes). */
export const CLASS_BYTES: Readonly<Record<TopicClass, number>> = {
  control: LIMITS.envelopeBytes,
  state: Math.max(...STATE_PAYLOADS.map((s) => s.length)),
  frame: LIMITS.frameBytes,
};

/** The part of the broker ACL the policy reads. */
export interface VpnMembers {
  /** May `principal` use the VPN's topics (it carries a member)? */
  isMember(vpnId: string, principal: string): boolean;
  /** Is `deviceId` an active member of the VPN (so `{vpn}/{deviceId}` is a real topic)? */
  hasMember(vpnId: string, deviceId: string): boolean;
}

export interface DevicePublish {
  topic: string;
  retain: boolean;
  bytes: number;
}

export type PublishVerdict = { ok: true; cls: TopicClass } | { ok: false; reason: PublishRefusal };

const refuse = (reason: PublishRefusal): PublishVerdict => ({ ok: false, reason });

/** The class of a device's publish, or why it has none. */
function classOf(clientId: string, topic: string, acl: VpnMembers): PublishVerdict {
  const t = parseTopic(topic);
  if (!t) return refuse('topic');
  if (t.area === 'svc') {
    const ops = SERVICES.includes(t.a as Service) ? DEVICE_OPS[t.a as Service] : [];
    return ops.includes(t.b) ? { ok: true, cls: 'control' } : refuse('topic');
  }
  if (t.area === 'dev') return t.a === clientId && t.b === 'state' ? { ok: true, cls: 'state' } : refuse('topic');
  if (!acl.isMember(t.a, clientId)) return refuse('acl');
  return t.b === 'all' || acl.hasMember(t.a, t.b) ? { ok: true, cls: 'frame' } : refuse('topic');
}

/** May device `clientId` publish this? Services are not checked here (they may use the whole tree). */
export function checkDevicePublish(clientId: string, p: DevicePublish, acl: VpnMembers): PublishVerdict {
  const v = classOf(clientId, p.topic, acl);
  if (!v.ok) return v;
  if (p.retain && v.cls !== 'state') return refuse('retain');
  if (p.bytes > CLASS_BYTES[v.cls]) return refuse('size');
  return v;
}
