/**
 * A board on Node: a QuickJS VM (quickjs-emscripten) running a board
 * bundle, in front of the Node host bridge (runtime/node/host-bridge.ts:
 * MQTT.js, node:crypto, Node timers, a Map for flash), as a board's native
 * side would be. Tests and bench/boards drive bundles through it; the
 * agent code inside is exactly what ships.
 *
 * Bytes cross the VM boundary as ArrayBuffers (the one binary type both
 * sides share); a prelude inside the VM turns them into the Uint8Arrays
 * the bridge contract speaks. Every call into the VM is followed by
 * running its pending jobs (promise continuations), and heap use is
 * sampled there, so peakHeap is the most the VM held at any point.
 */
import { getQuickJS, type QuickJSContext, type QuickJSHandle, type QuickJSRuntime } from 'quickjs-emscripten';
import { NodeHostBridge } from '../node/host-bridge.js';
import type { LogLevel } from '../../device/board/host.js';

export interface BoardHostOptions {
  brokerUrl: string;
  /** The VM's memory limit (bytes): the profile's RAM budget, to fail loudly if it is exceeded. */
  memoryLimit?: number;
  log?(level: LogLevel, msg: string): void;
}

const PRELUDE = `
(() => {
  const raw = globalThis.__raw;
  const buf = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);
  globalThis.kagiHost = {
    random: (n) => new Uint8Array(raw.random(n)),
    now: () => raw.now(),
    setTimer: (ms, fn) => raw.setTimer(ms, fn),
    clearTimer: (id) => raw.clearTimer(id),
    storageGet: (k) => raw.storageGet(k),
    storagePut: (k, v) => raw.storagePut(k, v),
    mqttConnect: (o, ev) => raw.mqttConnect(
      o.clientId, o.username, o.password ? buf(o.password) : undefined, o.keepalive,
      o.will ? o.will.topic : undefined, o.will ? buf(o.will.payload) : undefined, o.will ? o.will.retain : false,
      ev.onConnect, ev.onClose, (topic, payload) => ev.onMessage(topic, new Uint8Array(payload))),
    mqttPublish: (topic, payload, retain, done) => raw.mqttPublish(topic, buf(payload), retain, done),
    mqttSubscribe: (topics, done) => raw.mqttSubscribe(topics.join('\\n'), done),
    mqttEnd: (force, done) => raw.mqttEnd(force, done),
    log: (level, msg) => raw.log(level, msg),
  };
  globalThis.__bytes = (s) => { const u = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i) & 255; return u; };
  globalThis.__text = (u) => { let s = ''; for (let i = 0; i < u.length; i++) s += String.fromCharCode(u[i]); return s; };
})();
`;

export class QuickJsBoard {
  /** VM callbacks of host timers not yet run (freed when they run or are cleared). */
  private readonly timerCallbacks = new Map<number, QuickJSHandle>();
  private peak = 0;
  private disposed = false;

  private constructor(private readonly rt: QuickJSRuntime, readonly vm: QuickJSContext, readonly host: NodeHostBridge) {}

  /** The board's flash. */
  get storage(): Map<string, string> {
    return this.host.storage;
  }

  /** What the agent logged, and errors the VM raised in callbacks. */
  get lines(): string[] {
    return this.host.lines;
  }

  /** A VM with the host bridge installed and `bundle` evaluated. */
  static async load(bundle: string, o: BoardHostOptions): Promise<QuickJsBoard> {
    const qjs = await getQuickJS();
    const rt = qjs.newRuntime();
    if (o.memoryLimit) rt.setMemoryLimit(o.memoryLimit);
    const board = new QuickJsBoard(rt, rt.newContext(), new NodeHostBridge(o.brokerUrl, o.log));
    board.installRaw();
    board.evalSync(PRELUDE, 'prelude.js');
    board.evalSync(bundle, 'agent.js');
    return board;
  }

  /** Highest heap use (bytes) seen after any call into the VM. */
  get peakHeap(): number {
    return this.peak;
  }

  /** Heap in use now (bytes). */
  heap(): number {
    const h = this.rt.computeMemoryUsage();
    try {
      return (this.vm.dump(h) as { memory_used_size: number }).memory_used_size;
    } finally {
      h.dispose();
    }
  }

  resetPeak(): void {
    this.peak = this.heap();
  }

  private pump(): void {
    if (this.disposed) return;
    const r = this.rt.executePendingJobs();
    if (r.error) {
      const e = this.vm.dump(r.error);
      r.error.dispose();
      this.lines.push(`error: pending job failed: ${JSON.stringify(e)}`);
    }
    this.peak = Math.max(this.peak, this.heap());
  }

  private evalSync(code: string, file: string): void {
    const r = this.vm.evalCode(code, file);
    if (r.error) {
      const e = this.vm.dump(r.error);
      r.error.dispose();
      throw new Error(`QuickJS: ${file}: ${typeof e === 'object' && e ? `${e.name}: ${e.message}` : String(e)}`);
    }
    r.value.dispose();
    this.pump();
  }

  /** Evaluate an expression in the VM; if it is a promise, wait for it. The value comes back as JSON-like data. */
  async run(expr: string): Promise<unknown> {
    const r = this.vm.evalCode(`(${expr})`, 'run.js');
    if (r.error) throw this.failure(r.error);
    const isPromise = this.vm.typeof(r.value) === 'object' && this.vm.getProp(r.value, 'then').consume((t) => this.vm.typeof(t) === 'function');
    if (!isPromise) {
      const v = this.vm.dump(r.value);
      r.value.dispose();
      this.pump();
      return v;
    }
    const settled = this.vm.resolvePromise(r.value);
    r.value.dispose();
    this.pump();
    const out = await settled;
    if (out.error) throw this.failure(out.error);
    const v = this.vm.dump(out.value);
    out.value.dispose();
    this.pump();
    return v;
  }

  private failure(h: QuickJSHandle): Error {
    const e = this.vm.dump(h) as { name?: string; message?: string } | string;
    h.dispose();
    return new Error(typeof e === 'object' && e ? `${e.name ?? 'Error'}: ${e.message ?? ''}` : String(e));
  }

  /** Call a VM function handle later (a timer, an MQTT event), then run what it queued. */
  private callLater(fn: QuickJSHandle, args: () => QuickJSHandle[]): void {
    if (this.disposed) return;
    const a = args();
    const r = this.vm.callFunction(fn, this.vm.undefined, ...a);
    for (const h of a) h.dispose();
    if (r.error) this.lines.push(`error: callback threw: ${JSON.stringify(this.vm.dump(r.error))}`), r.error.dispose();
    else r.value.dispose();
    this.pump();
  }

  /** VM-side wrappers over the Node host bridge: handles in, handles out. */
  private installRaw(): void {
    const vm = this.vm;
    const host = this.host;
    const raw = vm.newObject();
    const fn = (name: string, f: (...a: QuickJSHandle[]) => QuickJSHandle | void) => vm.newFunction(name, f).consume((h) => vm.setProp(raw, name, h));
    const bytesOf = (h: QuickJSHandle) => vm.getArrayBuffer(h).consume((l) => new Uint8Array(l.value));
    const str = (h: QuickJSHandle | undefined) => (h && vm.typeof(h) === 'string' ? vm.getString(h) : undefined);
    const ab = (u: Uint8Array) => vm.newArrayBuffer(u.slice().buffer);
    /** A VM callback kept for the host to call once, then freed. */
    const once = (h: QuickJSHandle) => {
      const cb = h.dup();
      return (...args: (() => QuickJSHandle)[]) => {
        this.callLater(cb, () => args.map((a) => a()));
        cb.dispose();
      };
    };

    fn('random', (n) => ab(host.random(vm.getNumber(n!))));
    fn('now', () => vm.newNumber(host.now()));
    fn('setTimer', (ms, f) => {
      const cb = f!.dup();
      const id = host.setTimer(vm.getNumber(ms!), () => {
        this.timerCallbacks.delete(id);
        this.callLater(cb, () => []);
        cb.dispose();
      });
      this.timerCallbacks.set(id, cb);
      return vm.newNumber(id);
    });
    fn('clearTimer', (id) => {
      const n = vm.getNumber(id!);
      host.clearTimer(n);
      this.timerCallbacks.get(n)?.dispose();
      this.timerCallbacks.delete(n);
    });
    fn('storageGet', (k) => {
      const v = host.storageGet(vm.getString(k!));
      return v === undefined ? vm.undefined : vm.newString(v);
    });
    fn('storagePut', (k, v) => host.storagePut(vm.getString(k!), vm.getString(v!)));
    fn('log', (level, msg) => host.log(vm.getString(level!) as LogLevel, vm.getString(msg!)));
    fn('mqttConnect', (clientId, username, password, keepalive, willTopic, willPayload, willRetain, onConnect, onClose, onMessage) => {
      const evs = [onConnect!.dup(), onClose!.dup(), onMessage!.dup()] as const;
      const wt = str(willTopic);
      const user = str(username);
      host.mqttConnect(
        {
          clientId: vm.getString(clientId!),
          keepalive: vm.getNumber(keepalive!),
          ...(user !== undefined ? { username: user } : {}),
          ...(password && vm.typeof(password) === 'object' ? { password: bytesOf(password) } : {}),
          ...(wt ? { will: { topic: wt, payload: bytesOf(willPayload!), retain: vm.dump(willRetain!) === true } } : {}),
        },
        {
          onConnect: () => this.callLater(evs[0], () => []),
          onMessage: (topic, payload) => this.callLater(evs[2], () => [vm.newString(topic), ab(payload)]),
          onClose: (reason) => {
            this.callLater(evs[1], () => [vm.newString(reason)]);
            for (const h of evs) h.dispose();
          },
        },
      );
    });
    fn('mqttPublish', (topic, payload, retain, done) => {
      const finish = once(done!);
      host.mqttPublish(vm.getString(topic!), bytesOf(payload!), vm.dump(retain!) === true, (e) => (e ? finish(() => vm.newString(e)) : finish()));
    });
    fn('mqttSubscribe', (topics, done) => {
      const finish = once(done!);
      host.mqttSubscribe(vm.getString(topics!).split('\n').filter(Boolean), (e) => (e ? finish(() => vm.newString(e)) : finish()));
    });
    fn('mqttEnd', (force, done) => {
      const finish = once(done!);
      host.mqttEnd(vm.dump(force!) === true, () => finish());
    });
    vm.setProp(vm.global, '__raw', raw);
    raw.dispose();
  }

  /** Stop timers and the MQTT connection, and free the VM. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.host.dispose();
    for (const cb of this.timerCallbacks.values()) cb.dispose();
    this.timerCallbacks.clear();
    try {
      this.vm.dispose();
      this.rt.dispose();
    } catch (e) {
      // Handles still held by callbacks in flight: the VM is gone with the process.
      this.host.log('warn', `dispose: ${(e as Error).message}`);
    }
  }
}
