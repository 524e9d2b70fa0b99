/**
 * Network-device drivers (DESIGN §6): the config server computes the desired
 * state from its tables and each driver reconciles to it, idempotently. A
 * reconcile also runs at start-up, so a restart or a lost message heals.
 */
export interface VpnState {
  id: string;
  protocol: 'tcp' | 'udp';
  port: number;
  /** via: the relay a plaintext terminal sits behind (its MQTT principal). */
  members: { deviceId: string; address: string | null; via: string | null }[];
  /** Embodiment 5: priority (larger = more important) and the planned send rate. */
  priority: number;
  /** bits/s the VPN may send (servers/config/bandwidth-plan.ts); 0 with cut false = unlimited. */
  rate: number;
  /** Cut by the plan: its frames are not forwarded until the plan restores it. */
  cut: boolean;
}

export interface DesiredState {
  vpns: VpnState[];
  /** Devices revoked for good (kagi device revoke): drivers that hold connections drop theirs. */
  revoked?: string[];
}

export interface NetworkDriver {
  readonly name: string;
  /** Make the device match `state`. The state is shared by every driver and kept by some: never change it. */
  apply(state: DesiredState): Promise<void>;
}
