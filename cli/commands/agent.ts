/** kagi agent FILE: run a device agent from its bundle. */
import { isTlsUrl } from '../../protocol/broker-tls.js';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { backoffDelay } from '../../protocol/backoff.js';
import { detach, type DetachLog } from '../../device/detach.js';
import { duration, int, parse, readStdinLine, UsageError } from '../args.js';
import { lockDeviceFile } from '../agent-lock.js';
import { lastLineOfDefence, rejoiner, startOrSignal, untilSignal } from '../agent-life.js';
import { BindError } from '../../runtime/node/bind.js';
import { DEFAULT_HOLD_MS } from '../../device/stream.js';
import { parseBundle, type Bundle } from '../../device/bundle.js';
import type { Platform } from '../../device/platform.js';
import { RelayAgent } from '../../device/relay.js';
import { PlaintextAgent, parsePlainConfig } from '../../device/plaintext.js';
import { TcpRelayPorts, connectToPort, loadRelayProfile, relayProfileOf, type RelayProfile } from '../../runtime/node/relay-ports.js';
import type { BoardProfile } from '../../device/board-profile.js';
import { RawPorts, loadRawPorts, type RawPortSpec } from '../../runtime/node/raw-ports.js';
import { TerminalAgent } from '../../device/terminal.js';
import { TicketWallet } from '../../device/tickets.js';
import { nodePlatform } from '../../runtime/node/platform.js';
import { Tunnels, parseListen, parseTarget } from '../../runtime/node/tunnel.js';

export const agentHelp = `usage: kagi agent FILE [--user ID [--password-stdin]] [--listen VPN=LOCALPORT:PEER]... [--target VPN=HOST:PORT]...
       kagi agent RELAY.json --profile NAME [--port-base N] [--raw FILE]
       kagi agent PLAIN.json --via HOST:PORT [--user ID [--password-stdin]]

Runs the device agent of bundle FILE: connects to the broker named in the
bundle (or --broker URL), joins as --user or with the bundle's preset
credentials (the join checks the device as a config request would, so it
goes alone; with no user the agent asks for its config and stops there),
and carries TCP:
  --listen VPN=LOCALPORT:PEER  accept on 127.0.0.1:LOCALPORT, tunnel to device PEER
  --target VPN=HOST:PORT       where to connect streams arriving on VPN
                               (default 127.0.0.1:<the VPN's port>)
The first join as a user needs the password (--password-stdin reads it
from standard input); it returns a resumption ticket, kept in FILE.tickets
(0600, with the agent's static secrets sealed under its own key, so a
restart computes none), and from then on the agent holds no password:
re-joins (after a restart, an eviction, a grant) present the ticket. The
password is needed again only if the ticket is refused (expired, the
password changed, the ticket seen twice); the agent says so. A relay keeps
the tickets of its ports' terminals the same way, so a plaintext terminal
joins again with --user alone.
Sequence counters persist in FILE.state. Both files hold their content
twice, the newer written over the older and each checked, so a crash
leaves one whole (decision 131). One agent runs on a device file:
a second one on the same FILE is refused at start (exit 1), naming the
first (its lock goes with its process). Listeners are bound before the
agent connects: a LOCALPORT in use is an error naming it, and nothing is
joined. On SIGINT/SIGTERM (at any stage) a joined agent leaves its VPNs (the
control plane closes them to it and rekeys at once) and stops. Otherwise it
never exits by itself: it waits for the broker (saying which, on each
retry), retries config and join for as long as it takes (logging each
silent attempt with the broker, whether it is connected, and what to
check), and answers the control plane's polls; evicted (it stopped
answering, e.g. frozen or cut off), it resets that VPN's connections and
joins again by itself with backoff. It exits only when the broker refuses
its identity (unknown or revoked) or a join is refused; a join refused as
throttled (too many wrong passwords for the user or from the device) or
busy (the auth server's password queue is full) is not final: the agent
waits the time the refusal gives, with jitter, says so, and asks again.
While the broker is away, tunnelled connections hold: their bytes wait
(the socket is paused) and go on once it is back; a connection whose bytes
wait longer than --tunnel-hold is reset.
It prints "keys: VPN epoch N" on every new epoch and "left VPN (reason)".

A relay bundle (kind relay) runs a relay: --profile names its board profile
(board-profiles/NAME.json, e.g. node-relay-4port), whose TCP ports it
serves (node-relay-4port: 127.0.0.1:17101..17104); --port-base N moves
port i to N+i (0: ephemeral ports); a port in use is an error naming it
and --port-base, before the relay connects. --raw FILE
lists raw ports for legacy devices that run no agent, each
{ port, id, mac, user, password, vpn, peer }: the relay joins for the device
and tunnels the port's TCP to peer once FORWARDING. A plaintext
terminal file (kind plaintext) runs a plaintext terminal through its relay
port --via HOST:PORT, joins as --user, and prints what arrives from the
VPN; a port not there yet, or closed by a relay restart, is waited for
with backoff and joined through again (the relay holds its ticket).

options:
  --broker URL       override the bundle's broker URL (an mqtts:// one is
                     still checked against the file's brokerTls pin or CA)
  --no-broker-auth   send no CONNECT password (a broker that does not check it)
  --static-broker-auth  username = device id and a password derived from the
                     device and broker keys (a Mosquitto with dynamic security
                     programmed by kagi up --dynsec)
  --bind ADDR        connect to the broker from this source address
  --broker-wait D    give up (exit 1) if the first broker connection has not
                     succeeded within D (e.g. 2m; default: wait for ever)
  --tunnel-hold D    reset a tunnelled connection whose bytes have waited
                     this long for the peer, e.g. in a broker outage
                     (default 30s)

An external (roaming) terminal (kind external) has no config step: it joins
directly, and the control plane opens the network devices for the address it
connects from; started again from another address, the old one is closed.
  --verbose          debug logging`;

/**
 * `kagi agent`, and the Node board bundle's main (cli/board-agent.ts),
 * which passes its baked profile: there is no board-profiles/ beside a bundle.
 */
export async function agent(args: string[], baked?: BoardProfile): Promise<number> {
  const { values: v, positionals } = parse(args, {
    user: { type: 'string' }, 'password-stdin': { type: 'boolean', default: false },
    listen: { type: 'string', multiple: true, default: [] }, target: { type: 'string', multiple: true, default: [] },
    broker: { type: 'string' }, 'no-broker-auth': { type: 'boolean', default: false }, 'static-broker-auth': { type: 'boolean', default: false }, verbose: { type: 'boolean', default: false },
    profile: { type: 'string' }, 'port-base': { type: 'string' }, via: { type: 'string' }, raw: { type: 'string' }, bind: { type: 'string' },
    'broker-wait': { type: 'string' }, 'tunnel-hold': { type: 'string' },
  }, 1);
  const file = positionals[0]!;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`${file}: ${(e as Error).message}`);
  }
  const log = (level: string, msg: string) => {
    if (level !== 'debug' || v.verbose) console.log(`${level}: ${msg}`);
  };
  lastLineOfDefence();
  // From here on a signal stops the agent cleanly, whatever it is waiting for.
  const signal = untilSignal();
  if (json.kind === 'plaintext') return runPlaintext(file, json, v.via, v.user, v['password-stdin'], signal);
  let bundle;
  try {
    bundle = parseBundle(json);
  } catch (e) {
    throw new UsageError(`${file}: ${(e as Error).message}`);
  }
  const brokerUrl = v.broker ?? bundle.broker;
  if (!/^mqtts?:\/\/[^/\s]+/.test(brokerUrl)) throw new UsageError(`--broker must be a URL like mqtt://host:1883 or mqtts://host:8883, not '${brokerUrl}'`);
  // An mqtts:// --broker is the same broker under another name: the file's pin still holds.
  if (bundle.brokerTls && !isTlsUrl(brokerUrl)) log('warn', `${bundle.id}: --broker ${brokerUrl} is plain MQTT: the TLS pin in ${file} is not used`);
  // One agent per device file (cli/agent-lock.ts): taken before FILE.state or FILE.tickets is read.
  const lock = await lockDeviceFile(file);
  try {
    const platform = nodePlatform({
      brokerUrl,
      ...(bundle.brokerTls && isTlsUrl(brokerUrl) ? { brokerTls: bundle.brokerTls } : {}),
      stateFile: `${file}.state`,
      secretsFile: `${file}.tickets`,
      brokerAuth: v['no-broker-auth'] ? 'none' : v['static-broker-auth'] ? 'static' : 'counter',
      log,
      brokerHint: 'is kagi up serving this broker? pass --broker URL if it runs elsewhere',
      ...(v.bind ? { localAddress: v.bind } : {}),
    });
    const holdMs = duration(v['tunnel-hold'], 'tunnel-hold', DEFAULT_HOLD_MS);
    const brokerWait = v['broker-wait'] === undefined ? {} : { brokerWaitMs: duration(v['broker-wait'], 'broker-wait') };
    // Firmware: requests are retried for as long as it takes, each failure logged.
    const life: AgentLife = { attempts: Infinity, ...brokerWait, holdMs, log, signal };
    if (bundle.kind === 'relay') {
      if (!v.profile && !baked) throw new UsageError('a relay needs --profile NAME (see board-profiles/)');
      const profile = v.profile ? loadRelayProfile(v.profile) : relayProfileOf(baked!);
      return await runRelay(bundle, platform, profile, v['port-base'], v.raw ? loadRawPorts(v.raw) : [], life);
    }
    const listens = v.listen.map(parseListen);
    const targets = v.target.map(parseTarget);
    const user = v.user ?? bundle.user;
    // The password is held only until a ticket replaces it (device/tickets.ts).
    let password = v.user ? (v['password-stdin'] ? await readStdinLine(`password for ${v.user}`) : undefined) : bundle.password;
    if (v.user && password === undefined && !(await new TicketWallet(platform.secrets!, log).has(v.user))) {
      throw new UsageError(`no ticket for ${v.user} in ${file}.tickets: the first join needs the password (--password-stdin)`);
    }
    let tunnels: Tunnels | undefined;
    let stopping = false;
    const join = async () => {
      const joined = await a.join(user!, password);
      if (v.user && (await a.tickets.has(user!))) password = undefined;
      return joined;
    };
    const rejoin = rejoiner(`${bundle.id}`, join, () => stopping);
    const a: TerminalAgent = new TerminalAgent(bundle, platform, {
      attempts: life.attempts,
      ...brokerWait,
      onState: (s) => console.log(`state: ${s}`),
      onData: (vpn, from, p) => tunnels?.onData(vpn, from, p),
      onEpoch: (vpn, epoch) => console.log(`keys: ${vpn} epoch ${epoch}`),
      onLeft: (vpn, reason) => {
        console.log(`left ${vpn} (${reason})`);
        // The VPN's keys are gone: its connections cannot go on.
        tunnels?.abort(vpn, `left ${vpn} (${reason})`);
        // Evicted (stopped answering polls, e.g. frozen or cut off): a member
        // that comes back must join again, so the agent does.
        if (reason === 'evicted' && user && a.state === 'configured') rejoin();
      },
      onGranted: (vpn) => {
        console.log(`granted ${vpn}`);
        // A grant made after we joined (or a VPN made again): the join takes it.
        if (user && (a.state === 'configured' || a.state === 'joined')) rejoin();
      },
    });
    tunnels = Tunnels.forAgent(a, listens, targets, { log, holdMs });
    // Listeners first: a port in use fails here, before the agent joins anything.
    let ports: number[];
    try {
      ports = await tunnels.start();
    } catch (e) {
      if (!(e instanceof BindError)) throw e;
      const l = listens.find((x) => x.localPort === e.port)!;
      throw new Error(`--listen ${l.vpn}=${l.localPort}:${l.peer}: ${e.message}; pick another LOCALPORT (0: any free port)`);
    }
    listens.forEach((l, i) => console.log(`listening on 127.0.0.1:${ports[i]} → ${l.peer} over ${l.vpn}`));
    const startup = (async () => {
      await a.start();
      // The join checks the device as the config request does: a terminal
      // that joins at once sends it alone (decisions 122, 138; S301 for an
      // external one). With no user, the config request alone (S101–S104).
      if (a.needsConfig(user)) await a.configure();
      if (!user) return console.log('configured; no user given, so not joining any VPN');
      if (bundle.kind !== 'external') console.log(`joining as ${user} ${(await a.tickets.has(user)) ? 'on its ticket' : 'with the password'}: no config request`);
      for (const x of await join()) console.log(`joined ${x.id} (${x.protocol}/${x.port}, epoch ${x.epoch})`);
    })();
    try {
      if (!(await startOrSignal(startup, signal, log))) await signal;
    } finally {
      stopping = true;
      await tunnels.stop();
      await a.stop();
    }
    return 0;
  } finally {
    await lock.release();
  }
}

async function runRelay(bundle: Bundle, platform: Platform, profile: RelayProfile, portBase: string | undefined, raws: RawPortSpec[], o: AgentLife): Promise<number> {
  const base = portBase === undefined ? undefined : int(portBase, 'port-base');
  const specs = profile.ports.map((p, i) => ({ ...p, port: base === undefined ? p.port : base === 0 ? 0 : base + i }));
  const relay = new RelayAgent(bundle, specs.map((p) => p.name), platform, {
    attempts: o.attempts,
    ...(o.brokerWaitMs !== undefined ? { brokerWaitMs: o.brokerWaitMs } : {}),
    onPortState: (port, state, terminal) => console.log(`port ${port}: ${state}${terminal ? ` (${terminal})` : ''}`),
  });
  const isRaw = (name: string) => raws.some((r) => r.port === name);
  const ports = new TcpRelayPorts(relay, specs.filter((p) => !isRaw(p.name)));
  const raw = new RawPorts(relay, raws, specs, { log: o.log, holdMs: o.holdMs });
  // Ports first: one in use fails here, before the relay connects or joins.
  const inUse = (e: unknown) => {
    if (!(e instanceof BindError)) return e;
    const spec = specs.find((x) => x.port === e.port);
    return new Error(`relay port ${spec?.name ?? '?'}: ${e.message}; move the relay's ports with --port-base N (port i on N+i; 0: any free ports)`);
  };
  let bound: Record<string, number>, rawBound: Record<string, number>;
  try {
    bound = await ports.start();
    rawBound = await raw.listen();
  } catch (e) {
    await ports.stop();
    await raw.stop();
    throw inUse(e);
  }
  const startup = (async () => {
    await relay.start();
    console.log(`relay ${bundle.id} configured (profile ${profile.name})`);
    for (const [name, port] of Object.entries(bound)) console.log(`port ${name} on 127.0.0.1:${port}: RESTRICTED`);
    await raw.join();
    for (const [name, port] of Object.entries(rawBound)) console.log(`raw port ${name} on 127.0.0.1:${port}: FORWARDING`);
  })();
  try {
    if (!(await startOrSignal(startup, o.signal, o.log))) await o.signal;
  } finally {
    await raw.stop();
    await ports.stop();
    await relay.stop();
  }
  return 0;
}

/** What every agent kind run here shares: firmware retry policy, the tunnels' hold, the log, the stop signal. */
interface AgentLife {
  attempts: number;
  brokerWaitMs?: number;
  holdMs: number;
  log(level: 'debug' | 'info' | 'warn', msg: string): void;
  signal: Promise<void>;
}

/**
 * A plaintext terminal on its relay port, for as long as it is not told to
 * stop: a port not there yet (the relay still starting) or gone (the relay
 * restarted) is waited for with backoff and connected again, and the
 * terminal configures and joins again through it (the relay joins with the
 * ticket it holds for us). Firmware: nothing here exits on its own but a
 * refusal.
 */
async function runPlaintext(file: string, json: unknown, via: string | undefined, user: string | undefined, pwStdin: boolean, signal: Promise<void>): Promise<number> {
  const cfg = parsePlainConfig(json);
  const m = via ? /^(.+):(\d+)$/.exec(via) : null;
  if (!m) throw new UsageError('a plaintext terminal needs --via HOST:PORT (its relay port)');
  const [host, port] = [m[1]!, Number(m[2])];
  // Without --password-stdin the relay joins with the ticket it holds for us;
  // after the first join it holds one, so the password is not kept.
  let password = user && pwStdin ? await readStdinLine(`password for ${user}`) : undefined;
  let stopped = false;
  const log: DetachLog = (level, msg) => void (level !== 'debug' && console.log(`${level}: ${msg}`));
  detach(signal.then(() => void (stopped = true)), 'plaintext terminal: stop', log);
  /** Wait `ms` before the next attempt, or less if we are told to stop. */
  const pause = (ms: number) => Promise.race([signal, new Promise((r) => setTimeout(r, ms))]);
  for (let attempt = 0; !stopped; ) {
    let sock: Socket;
    try {
      sock = await connectToPort(host, port);
    } catch (e) {
      const delay = backoffDelay(attempt++, Math.random());
      console.log(`waiting for the relay port ${host}:${port}: ${(e as Error).message}; attempt ${attempt + 1} in ${delay} ms`);
      await pause(delay);
      continue;
    }
    attempt = 0;
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.on('error', () => {}); // the close that follows says it
    // Races the requests: a port that closes mid-request ends them (handled once here, raced twice).
    const lost = closed.then((): never => {
      throw new Error('the relay port closed');
    });
    detach(lost, 'plaintext terminal: relay port', log); // raced below; a close after the race is expected
    const p = new PlaintextAgent(cfg, { write: (b) => void sock.write(b) }, {
      onData: (vpn, peer, b) => console.log(`data ${vpn} ${peer}: ${new TextDecoder().decode(b)}`),
      onRestricted: (vpn, reason) => console.log(`restricted: ${vpn}${reason ? ` (${reason})` : ''}`),
      onWaiting: (s, reason) => console.log(`waiting: ${reason}; the relay asks again in about ${s} s`),
    });
    sock.on('data', (d: Buffer) => p.input(new Uint8Array(d)));
    try {
      await Promise.race([p.configure(), lost]);
      console.log(`${cfg.id} configured through ${cfg.relay}/${cfg.port} (${file})`);
      if (user) {
        for (const x of await Promise.race([p.join(user, password), lost])) console.log(`joined ${x.id} (${x.protocol}/${x.port})`);
        password = undefined;
      }
    } catch (e) {
      sock.destroy();
      if ((e as Error).message.startsWith('refused:')) throw e; // the control plane said no: the operator must act
      console.log(`${cfg.id}: ${(e as Error).message}; connecting again`);
      await pause(backoffDelay(attempt++, Math.random()));
      continue;
    }
    await Promise.race([signal, closed]);
    sock.destroy();
    if (!stopped) console.log(`${cfg.id}: the relay port closed; connecting again`);
  }
  return 0;
}
