/**
 * The host bridge: everything a board's native side gives the agent bundle,
 * and nothing more (docs/boards.md). Plain callbacks and byte arrays only,
 * so a C host (XS, QuickJS) implements it without promises or classes.
 *
 * The native side sets `globalThis.kagiHost` to an object of this shape
 * before it evaluates the bundle, then calls `kagiBoard.start()`.
 */
export type LogLevel = 'debug' | 'info' | 'warn';

export interface HostMqttConnect {
  clientId: string;
  username?: string;
  password?: Uint8Array;
  /** Seconds; the host sends PINGREQ and reports a dead link as onClose. */
  keepalive: number;
  will?: { topic: string; payload: Uint8Array; retain: boolean };
}

export interface HostMqttEvents {
  /** CONNACK accepted. */
  onConnect(): void;
  /** The connection closed or could not open (the agent reconnects; the host must not). */
  onClose(reason: string): void;
  onMessage(topic: string, payload: Uint8Array): void;
}

export interface HostBridge {
  /** `n` cryptographically strong random bytes (the board's RNG). */
  random(n: number): Uint8Array;
  /** A millisecond clock; only differences matter (monotonic is best). */
  now(): number;
  /** Call `fn` once after `ms`; returns an id for clearTimer. */
  setTimer(ms: number, fn: () => void): number;
  clearTimer(id: number): void;
  /** Persistent key-value storage (flash): counters must survive a reboot. */
  storageGet(key: string): string | undefined;
  storagePut(key: string, value: string): void;
  /** Open one MQTT 3.1.1 connection (clean session, QoS 1). */
  mqttConnect(o: HostMqttConnect, ev: HostMqttEvents): void;
  /** QoS 1 publish; `done(error)` after PUBACK, or with a reason when it failed or the link died. */
  mqttPublish(topic: string, payload: Uint8Array, retain: boolean, done: (error?: string) => void): void;
  mqttSubscribe(topics: string[], done: (error?: string) => void): void;
  /** Close the connection: gracefully (DISCONNECT, no will) unless `force`. */
  mqttEnd(force: boolean, done: () => void): void;
  /** Relays: bytes to a port's wire (UART, TCP); bytes from it go to kagiBoard.portInput. */
  portWrite?(port: string, bytes: Uint8Array): void;
  log(level: LogLevel, msg: string): void;
}
