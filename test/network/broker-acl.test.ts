/**
 * The broker ACL driver applies a patched VPN by its difference (decision
 * 110): after any sequence of states (members joining, leaving, moving
 * behind a relay, lists sorted or not, VPNs appearing and going) the
 * broker's ACL is exactly what replacing every VPN whole would give.
 * fast-check on the real BrokerAcl; a patch like the config server's keeps
 * the untouched members' objects.
 */
import t from 'tap';
import fc from 'fast-check';
import { BrokerAcl } from '../../broker/acl.js';
import { BrokerAclDriver } from '../../network/broker-acl.js';
import type { DesiredState, VpnState } from '../../network/driver.js';

type Member = VpnState['members'][number];
const vpn = (id: string, members: Member[]): VpnState => ({ id, protocol: 'tcp', port: 1, priority: 0, rate: 0, cut: false, members });

/** What the ACL says, every question it answers, for the devices and principals in play. */
function view(acl: BrokerAcl, ids: string[]): string {
  const snap = acl.snapshot();
  const out: string[] = [JSON.stringify(Object.keys(snap).sort().map((v) => [v, snap[v]]))];
  for (const v of ['v1', 'v2']) for (const p of ids) {
    out.push(`${v} ${p} member=${acl.isMember(v, p)} has=${acl.hasMember(v, p)}`);
    for (const d of ids) if (acl.carries(v, p, d)) out.push(`${v} ${p} carries ${d}`);
  }
  return out.join('\n');
}

const ids = ['a', 'b', 'c', 'd', 'e', 'r1', 'r2'];
const member = fc.record({ deviceId: fc.constantFrom(...ids.slice(0, 5)), via: fc.constantFrom(null, 'r1', 'r2') }).map((m): Member => ({ ...m, address: null }));
/** One step: a VPN's members replaced (sorted or shuffled), or patched like a join (one member's row replaced, the rest the same objects), or a VPN gone. */
const step = fc.record({ vpn: fc.constantFrom('v1', 'v2'), kind: fc.constantFrom('replace', 'patch', 'drop'), members: fc.uniqueArray(member, { selector: (m) => m.deviceId, maxLength: 5 }), sorted: fc.boolean(), one: member, leave: fc.boolean() });

t.test('applied by difference, the ACL equals replacing every VPN whole', async (t) => {
  await fc.assert(fc.asyncProperty(fc.array(step, { maxLength: 25 }), async (steps) => {
    const acl = new BrokerAcl();
    const driver = new BrokerAclDriver(acl);
    let state: DesiredState = { vpns: [] };
    for (const s of steps) {
      const others = state.vpns.filter((v) => v.id !== s.vpn);
      const prev = state.vpns.find((v) => v.id === s.vpn);
      let next: VpnState | null;
      if (s.kind === 'drop') next = null;
      else if (s.kind === 'patch' && prev) {
        const kept = prev.members.filter((m) => m.deviceId !== s.one.deviceId);
        if (!s.leave) kept.push(s.one);
        next = vpn(s.vpn, kept.sort((x, y) => (x.deviceId < y.deviceId ? -1 : x.deviceId > y.deviceId ? 1 : 0)));
      } else {
        const ms = [...s.members].sort((x, y) => (x.deviceId < y.deviceId ? -1 : 1));
        next = vpn(s.vpn, s.sorted ? ms : ms.reverse());
      }
      state = { vpns: next ? [...others, next] : others };
      await driver.apply(state);
      const whole = new BrokerAcl();
      for (const v of state.vpns) whole.setMembers(v.id, v.members.map((m) => ({ deviceId: m.deviceId, principal: m.via ?? m.deviceId })));
      if (view(acl, ids) !== view(whole, ids)) return false;
    }
    return true;
  }), { numRuns: 500 });
  t.pass('500 sequences of up to 25 states: the same ACL as a whole replacement after every one');
});
