/** Memory driver: keeps the last applied state, for tests and `kagi status`. */
import type { DesiredState, NetworkDriver } from './driver.js';

export class MemoryDriver implements NetworkDriver {
  readonly name = 'memory';
  state: DesiredState = { vpns: [] };
  applied = 0;

  async apply(state: DesiredState): Promise<void> {
    // Kept as given, not copied: the config server builds a new state for
    // every reconcile and never changes one it has applied (a copy of
    // 10,000 members per run was a twentieth of the process).
    this.state = state;
    this.applied++;
  }

  members(vpnId: string): string[] {
    return (this.state.vpns.find((v) => v.id === vpnId)?.members ?? []).map((m) => m.deviceId).sort();
  }
}
