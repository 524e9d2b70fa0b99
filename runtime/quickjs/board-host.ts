/**
 * A board on Node: a QuickJS VM (quickjs-emscripten) running a board
 * bundle, with the host bridge (device/board/host.ts) implemented here the
 * way a board's native side would: MQTT.js for MQTT, node:crypto for the
 * RNG, Node timers, a Map for flash storage. Tests and bench/boards drive
 * bundles through it; the agent code inside is exactly what ships.
 *
 * Bytes cross the VM boundary as ArrayBuffers (the one binary type both
 * sides share); a prelude inside the VM turns them into the Uint8Arrays
 * the bridge contract speaks. Every call into the VM is followed by
 * running its pending jobs (promise continuations), and heap use is
 * sampled there, so peakHeap is the most the VM held at any point.
 */
import { getQuickJS, type QuickJSContext, type QuickJSHandle, type QuickJSRuntime } from 'quickjs-emscripten';
import mqtt, { type MqttClient } from 'mqtt';
import { randomBytes } from 'node:crypto';

export interface BoardHostOptions {
  brokerUrl: string;
  /** The VM's memory limit (bytes): the profile's RAM budget, to fail loudly if it is exceeded. */
  memoryLimit?: number;
  log?(level: string, msg: string): void;
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
  /** Host timers, with the VM callback each holds (freed when it runs or is cleared). */
  private readonly timers = new Map<number, { t: ReturnType<typeof setTimeout>; cb: QuickJSHandle }>();
  private nextTimer = 1;
  private client: MqttClient | null = null;
  readonly storage = new Map<string, string>();
  readonly lines: string[] = [];
  private peak = 0;
  private disposed = false;

  private constructor(private readonly rt: QuickJSRuntime, readonly vm: QuickJSContext, private readonly o: BoardHostOptions) {}

  /** A VM with the host bridge installed and `bundle` evaluated. */
  static async load(bundle: string, o: BoardHostOptions): Promise<QuickJsBoard> {
    const qjs = await getQuickJS();
    const rt = qjs.newRuntime();
    if (o.memoryLimit) rt.setMemoryLimit(o.memoryLimit);
    const board = new QuickJsBoard(rt, rt.newContext(), o);
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

  private installRaw(): void {
    const vm = this.vm;
    const raw = vm.newObject();
    const fn = (name: string, f: (...a: QuickJSHandle[]) => QuickJSHandle | void) => vm.newFunction(name, f).consume((h) => vm.setProp(raw, name, h));
    const bytesOf = (h: QuickJSHandle) => vm.getArrayBuffer(h).consume((l) => Buffer.from(l.value));
    const str = (h: QuickJSHandle | undefined) => (h && vm.typeof(h) === 'string' ? vm.getString(h) : undefined);

    fn('random', (n) => vm.newArrayBuffer(new Uint8Array(randomBytes(vm.getNumber(n))).buffer));
    fn('now', () => vm.newNumber(Date.now()));
    fn('setTimer', (ms, f) => {
      const id = this.nextTimer++;
      const cb = f!.dup();
      const t = setTimeout(() => {
        this.timers.delete(id);
        this.callLater(cb, () => []);
        cb.dispose();
      }, vm.getNumber(ms!));
      this.timers.set(id, { t, cb });
      return vm.newNumber(id);
    });
    fn('clearTimer', (id) => {
      const timer = this.timers.get(vm.getNumber(id!));
      if (!timer) return;
      clearTimeout(timer.t);
      timer.cb.dispose();
      this.timers.delete(vm.getNumber(id!));
    });
    fn('storageGet', (k) => {
      const v = this.storage.get(vm.getString(k!));
      return v === undefined ? vm.undefined : vm.newString(v);
    });
    fn('storagePut', (k, v) => void this.storage.set(vm.getString(k!), vm.getString(v!)));
    fn('log', (level, msg) => {
      const line = `${vm.getString(level!)}: ${vm.getString(msg!)}`;
      this.lines.push(line);
      this.o.log?.(vm.getString(level!), vm.getString(msg!));
    });
    fn('mqttConnect', (clientId, username, password, keepalive, willTopic, willPayload, willRetain, onConnect, onClose, onMessage) => {
      const evs = [onConnect!.dup(), onClose!.dup(), onMessage!.dup()] as const;
      const wt = str(willTopic);
      const client = mqtt.connect(this.o.brokerUrl, {
        clientId: vm.getString(clientId!),
        ...(str(username) !== undefined ? { username: str(username)! } : {}),
        ...(password && vm.typeof(password) === 'object' ? { password: bytesOf(password) } : {}),
        keepalive: vm.getNumber(keepalive!),
        clean: true,
        reconnectPeriod: 0, // the agent reconnects (bridge contract)
        protocolVersion: 4,
        ...(wt ? { will: { topic: wt, payload: bytesOf(willPayload!), retain: vm.dump(willRetain!) === true, qos: 1 as const } } : {}),
      });
      this.client = client;
      let closed = false;
      client.on('connect', () => this.callLater(evs[0], () => []));
      client.on('message', (topic, payload) => this.callLater(evs[2], () => [vm.newString(topic), vm.newArrayBuffer(new Uint8Array(payload).buffer)]));
      const close = (reason: string) => {
        if (closed) return;
        closed = true;
        this.callLater(evs[1], () => [vm.newString(reason)]);
        for (const h of evs) h.dispose();
      };
      client.on('error', (e) => close(e.message));
      client.on('close', () => close('connection closed'));
    });
    fn('mqttPublish', (topic, payload, retain, done) => {
      const cb = done!.dup();
      const c = this.client;
      const finish = (e?: Error) => {
        this.callLater(cb, () => (e ? [vm.newString(e.message)] : []));
        cb.dispose();
      };
      if (!c) return finish(new Error('not connected'));
      c.publishAsync(vm.getString(topic!), bytesOf(payload!), { qos: 1, retain: vm.dump(retain!) === true }).then(() => finish(), finish);
    });
    fn('mqttSubscribe', (topics, done) => {
      const cb = done!.dup();
      const list = vm.getString(topics!).split('\n').filter(Boolean);
      const finish = (e?: Error) => {
        this.callLater(cb, () => (e ? [vm.newString(e.message)] : []));
        cb.dispose();
      };
      if (!this.client || list.length === 0) return finish();
      this.client.subscribeAsync(list, { qos: 1 }).then(() => finish(), finish);
    });
    fn('mqttEnd', (force, done) => {
      const cb = done!.dup();
      const c = this.client;
      this.client = null;
      const finish = () => {
        this.callLater(cb, () => []);
        cb.dispose();
      };
      if (!c) return finish();
      c.end(vm.dump(force!) === true, {}, finish);
    });
    vm.setProp(vm.global, '__raw', raw);
    raw.dispose();
  }

  /** Stop timers and the MQTT connection, and free the VM. */
  dispose(): void {
    if (this.disposed) return;
    for (const timer of this.timers.values()) {
      clearTimeout(timer.t);
      timer.cb.dispose();
    }
    this.timers.clear();
    this.client?.end(true);
    this.client = null;
    this.disposed = true;
    try {
      this.vm.dispose();
      this.rt.dispose();
    } catch (e) {
      // Handles still held by callbacks in flight: the VM is gone with the process.
      this.lines.push(`warn: dispose: ${(e as Error).message}`);
    }
  }
}
