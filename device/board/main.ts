/**
 * The entry point of a board bundle (rollup.config.js, `kagi bundle`).
 *
 * The native side sets `globalThis.kagiHost` (host.ts), evaluates the
 * bundle, and calls `kagiBoard.start()`. The profile is baked in at build
 * time; the device file is baked in (`kagi bundle --device FILE`) or read
 * from the host's storage under `device` (provisioned separately, so one
 * image serves many devices).
 */
import { parseBundle, type Bundle } from '../bundle.js';
import { TerminalAgent, type VpnInfo } from '../terminal.js';
import { RelayAgent } from '../relay.js';
import type { BoardProfile } from '../board-profile.js';
import { bridgePlatform } from './bridge-platform.js';
import { installTimers } from './globals.js';
import type { HostBridge } from './host.js';

/** Baked in by the build (rollup `intro`): the profile, and the device file if given. */
declare const __KAGI_BOARD__: { profile: BoardProfile; device: unknown } | undefined;

export interface BoardStartOptions {
  /** A device file (JSON) to use instead of the baked or stored one. */
  device?: unknown;
  brokerAuth?: 'counter' | 'static' | 'none';
  timeoutMs?: number;
  onData?(vpn: string, from: string, payload: Uint8Array): void;
}

export interface BoardTerminal {
  readonly id: string;
  state(): string;
  configure(): Promise<Record<string, unknown>>;
  join(user: string, password: string): Promise<VpnInfo[]>;
  send(vpn: string, to: string, payload: Uint8Array): Promise<void>;
  epochs(): Record<string, number>;
  stop(): Promise<void>;
}

export interface BoardRelay {
  readonly id: string;
  status(): ReturnType<RelayAgent['status']>;
  /** Bytes read from a port's wire. */
  portInput(port: string, bytes: Uint8Array): void;
  stop(): Promise<void>;
}

function host(): HostBridge {
  const h = (globalThis as { kagiHost?: HostBridge }).kagiHost;
  if (!h) throw new Error('kagi board: globalThis.kagiHost is not set (the native side must provide the host bridge first)');
  return h;
}

function deviceFile(h: HostBridge, given: unknown): Bundle {
  const baked = typeof __KAGI_BOARD__ === 'undefined' ? undefined : __KAGI_BOARD__.device;
  const stored = h.storageGet('device');
  const json = given ?? baked ?? (stored === undefined ? undefined : JSON.parse(stored));
  if (json === undefined) throw new Error('kagi board: no device file (bake one with kagi bundle --device, or store it under "device")');
  return parseBundle(json);
}

function profile(): BoardProfile | null {
  return typeof __KAGI_BOARD__ === 'undefined' ? null : __KAGI_BOARD__.profile;
}

async function start(o: BoardStartOptions = {}): Promise<BoardTerminal | BoardRelay> {
  const h = host();
  installTimers(h);
  const p = profile();
  const b = deviceFile(h, o.device);
  const platform = bridgePlatform(h, { storage: p?.storage === 'key-value' ? 'key-value' : 'none', brokerAuth: o.brokerAuth ?? 'counter' });
  const timeouts = o.timeoutMs ? { timeoutMs: o.timeoutMs } : {};
  if (b.kind === 'relay') {
    const ports = p?.ports.map((x) => x.name) ?? [];
    const relay = new RelayAgent(b, ports, platform, timeouts);
    for (const name of ports) relay.attach(name, { write: (bytes) => h.portWrite?.(name, bytes) });
    await relay.start();
    return { id: b.id, status: () => relay.status(), portInput: (port, bytes) => relay.input(port, bytes), stop: () => relay.stop() };
  }
  const t = new TerminalAgent(b, platform, { ...timeouts, ...(o.onData ? { onData: o.onData } : {}) });
  await t.start();
  return {
    id: b.id,
    state: () => t.state,
    configure: () => t.configure(),
    join: (user, password) => t.join(user, password),
    send: (vpn, to, payload) => t.send(vpn, to, payload),
    epochs: () => t.epochs(),
    stop: () => t.stop(),
  };
}

(globalThis as { kagiBoard?: unknown }).kagiBoard = { profile: profile(), start };
