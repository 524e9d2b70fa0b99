/**
 * bench/storm's devices, in a process of their own (one of --device-processes):
 * a share of the fleet's agents, and the same share of the floor's bare
 * clients, driven by the bench over IPC. On a site every device has its
 * own CPU; here they share the host's cores with kagi up, and one process
 * of 10,000 agents is one thread, which kagi up then waits on. Splitting
 * the devices over processes lets them use the cores kagi up leaves.
 *
 * Commands (one at a time; each answered with { done, ... }):
 *   setup  {bundles, url, files, concurrency}  first joins with the password
 *   floor  {url, from}     connect + one round trip for each of the share's
 *                          clients (ids from..from+n), times from the command
 *   down                   power loss: every link dropped, nobody leaves
 *   storm  {configRequest, timeoutMs}  every agent starts again from its files, asking again
 *                          after timeoutMs without an answer; times from the command
 *   stop                   the agents stop (no leave); the process exits once it answered
 * Progress: { progress: n } as agents get back (every 100).
 */
import mqtt from 'mqtt';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle } from '../device/bundle.js';
import { TerminalAgent } from '../device/terminal.js';
import { nodePlatform } from '../runtime/node/platform.js';
import { cpuMsSince, mark, noDelay, pool } from './common.js';
import { backoffDelay } from '../protocol/backoff.js';

export type DevicesCommand =
  | { cmd: 'setup'; bundles: Bundle[]; url: string; files: string; concurrency: number }
  /** startBatch: start the clients this many per turn of the event loop (default: all in one). */
  | { cmd: 'floor'; url: string; from: number; startBatch?: number }
  | { cmd: 'down' }
  /** configRequest: ask for the config before the re-join, as before decision 122. */
  | { cmd: 'storm'; configRequest: boolean; timeoutMs: number; startBatch?: number }
  | { cmd: 'stop' };

export interface DevicesAnswer {
  done: DevicesCommand['cmd'];
  times?: number[];
  /** This process's CPU during the command (ms). */
  cpuMs?: number;
  retries?: number;
  error?: string;
}

let bundles: Bundle[] = [];
let url = '';
let files = '';
let agents: TerminalAgent[] = [];

const send = (m: DevicesAnswer | { progress: number }) => process.send!(m);

/**
 * Each device's files in a directory of its own, as each device has its own
 * storage on a site: 10,000 devices' files in one directory made every
 * agent's start wait on that directory's lock, taken by the renames of the
 * others' writes (a third of this process's thread in one storm's profile).
 */
function makeAgent(b: Bundle, timeoutMs = 60_000): TerminalAgent {
  const dir = join(files, b.id);
  mkdirSync(dir, { recursive: true });
  const platform = nodePlatform({ ...(process.env.STORM_DEBUG ? { log: (l: string, m: string) => console.error(l, m) } : {}), brokerUrl: url, stateFile: join(dir, 'device.json.state'), secretsFile: join(dir, 'device.json.tickets') });
  return new TerminalAgent(b, platform, { timeoutMs, attempts: Infinity });
}

/**
 * Starts let through `batch` at a time, a turn of the event loop between
 * batches (bench:storm --start-batch); without a batch, all at once. The
 * k-th caller waits for its batch's turn.
 */
function startGate(batch: number | undefined): (k: number) => Promise<void> {
  if (!batch) return async () => {};
  const turns: Promise<void>[] = [Promise.resolve()];
  return (k) => {
    const b = Math.floor(k / batch);
    for (let i = turns.length; i <= b; i++) turns.push(turns[i - 1]!.then(() => new Promise<void>((r) => setImmediate(r))));
    return turns[b]!;
  };
}

/** Each agent of the share starts again (all at once, or `startBatch` per turn); its time until it is back in its VPN (ms). */
async function storm(configRequest: boolean, timeoutMs: number, startBatch?: number): Promise<number[]> {
  agents = bundles.map((b) => makeAgent(b, timeoutMs));
  mark('storm-start');
  const t0 = performance.now();
  let back = 0;
  const gate = startGate(startBatch);
  const times = await Promise.all(agents.map(async (a, k) => {
    await gate(k);
    await a.start();
    // On its ticket: no config request, no password (decision 122); an agent
    // retries what is not a refusal, as kagi agent does.
    if (configRequest) await a.configure();
    await a.join('bench');
    if (++back % 100 === 0) send({ progress: 100 });
    return performance.now() - t0;
  }));
  mark('storm-end');
  return times;
}

/** The share's bare clients: connect, subscribe, one request/response each. */
async function floor(floorUrl: string, from: number, startBatch?: number): Promise<{ times: number[]; retries: number }> {
  const t0 = performance.now();
  const clients: mqtt.MqttClient[] = [];
  let retries = 0;
  // A client whose connection the broker closed under the load tries
  // again after the agents' backoff (with jitter), as the agents do: its
  // time counts from the storm. Without the wait, a floor server that died
  // had every client of the share connect again at once, for ever, at
  // full CPU (the parent ends the bench when its floor server exits).
  const gate = startGate(startBatch);
  const times = await Promise.all(bundles.map(async (_, k) => {
    const i = from + k;
    await gate(k);
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, backoffDelay(attempt - 1, Math.random())));
      let c: mqtt.MqttClient | undefined;
      try {
        c = noDelay(await mqtt.connectAsync(floorUrl, { clientId: `floor-${i}`, reconnectPeriod: 0, connectTimeout: 120_000 }));
        clients.push(c);
        await c.subscribeAsync(`floor/res/${i}`, { qos: 1 });
        const got = new Promise<void>((r, reject) => (c!.once('message', () => r()), c!.once('close', () => reject(new Error('closed')))));
        // Both awaited at once: a close while the publish waits rejects `got` with its handler already on.
        await Promise.all([c.publishAsync(`floor/req/${i}`, Buffer.alloc(200), { qos: 1 }), got]);
        return performance.now() - t0;
      } catch {
        c?.end(true);
        retries++;
      }
    }
  }));
  await Promise.all(clients.map((c) => c.endAsync(true)));
  return { times, retries };
}

async function handle(m: DevicesCommand): Promise<DevicesAnswer> {
  const cpu0 = process.cpuUsage();
  switch (m.cmd) {
    case 'setup': {
      ({ bundles, url, files } = m);
      agents = [];
      let joined = 0;
      await pool(0, bundles.length, m.concurrency, async (i) => {
        const a = makeAgent(bundles[i]!);
        agents.push(a);
        await a.start();
        await a.configure();
        await a.join('bench', 'bench-password');
        if (++joined % 100 === 0) send({ progress: 100 });
      });
      return { done: 'setup' };
    }
    case 'floor': {
      const { times, retries } = await floor(m.url, m.from, m.startBatch);
      return { done: 'floor', times, retries, cpuMs: cpuMsSince(cpu0) };
    }
    case 'storm':
      return { done: 'storm', times: await storm(m.configRequest, m.timeoutMs, m.startBatch), cpuMs: cpuMsSince(cpu0) };
    case 'down':
    case 'stop': // the same power loss; the process then exits
      await Promise.all(agents.map((a) => a.stop({ leave: false })));
      return { done: m.cmd };
  }
}

process.on('message', (m: DevicesCommand) => {
  void handle(m)
    .catch((e: Error): DevicesAnswer => ({ done: m.cmd, error: e.stack ?? e.message }))
    // After stop: exit once the answer is out (a --cpu-prof profile is written at a normal exit).
    .then((a) => process.send!(a, () => m.cmd === 'stop' && process.exit(0)));
});
