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
}

export interface DesiredState {
  vpns: VpnState[];
}

export interface NetworkDriver {
  readonly name: string;
  apply(state: DesiredState): Promise<void>;
}
