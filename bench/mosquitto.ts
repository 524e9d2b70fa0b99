/**
 * A Mosquitto of a bench's own: anonymous, no persistence, one loopback
 * listener on a free port, $SYS every second. Its RSS is read from /proc,
 * and what it dropped from $SYS/broker/publish/messages/dropped: the
 * messages it threw away for clients whose queue was full
 * (`max_queued_messages`, 1000 by default), which no client is told of.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { freePort } from './common.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Mosquitto {
  private constructor(readonly child: ChildProcess, readonly url: string, private readonly dir: string) {}

  /** Started and listening; `conf` lines are added to the configuration. */
  static async start(conf: string[] = []): Promise<Mosquitto> {
    const dir = mkdtempSync(join(tmpdir(), 'kagi-bench-mosquitto-'));
    const port = await freePort();
    writeFileSync(join(dir, 'mosquitto.conf'), [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'max_connections -1', 'sys_interval 1', ...conf, ''].join('\n'));
    const child = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.once('error', (e) => (err += e.message));
    const end = Date.now() + 30_000;
    for (;;) {
      const up = await new Promise<boolean>((r) => {
        const s = createConnection(port, '127.0.0.1', () => (s.destroy(), r(true)));
        s.once('error', () => r(false));
      });
      if (up) return new Mosquitto(child, `mqtt://127.0.0.1:${port}`, dir);
      if (Date.now() > end || child.exitCode !== null) throw new Error(`mosquitto did not listen on ${port}: ${err.trim() || 'no output'} (apt-get install -y mosquitto)`);
      await sleep(50);
    }
  }

  /** Resident bytes (VmRSS); a C broker has no garbage to collect first. */
  rss(): number {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  }

  /**
   * Messages dropped since it started. Its $SYS counter is published
   * (retained, every second) only once it is not 0, so a broker that says
   * nothing within three seconds has dropped nothing.
   */
  async dropped(): Promise<number> {
    const c = await mqtt.connectAsync(this.url, { clientId: `bench-sys-${process.pid}`, reconnectPeriod: 0 });
    try {
      const said = new Promise<number>((resolve) => {
        const timer = setTimeout(() => resolve(0), 3000);
        c.on('message', (_t, payload) => (clearTimeout(timer), resolve(Number(payload.toString()))));
      });
      await c.subscribeAsync('$SYS/broker/publish/messages/dropped', { qos: 0 });
      return await said;
    } finally {
      await c.endAsync(true);
    }
  }

  stop(): Promise<void> {
    return new Promise((r) => {
      const done = () => (rmSync(this.dir, { recursive: true, force: true }), r());
      if (this.child.exitCode !== null) return done();
      this.child.once('exit', done);
      this.child.kill('SIGTERM');
    });
  }
}
