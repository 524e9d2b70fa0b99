/** The Mosquitto already running on 127.0.0.1:1883, or a loud skip. */
import { createConnection } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';

export const MOSQUITTO_URL = 'mqtt://127.0.0.1:1883';

export function mosquittoUp(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port: 1883 });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

export const MOSQUITTO_SKIP = 'SKIPPED: needs Mosquitto on 127.0.0.1:1883 (start it with: mosquitto -d -c /etc/mosquitto/mosquitto.conf)';

/**
 * A private Mosquitto on 127.0.0.1:`port` (local-only mode, anonymous), for
 * tests that restart the broker or set its configuration (`conf.lines`,
 * written to a file in `conf.dir`); undefined when the binary is missing.
 */
export const haveMosquittoBinary = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].some((p) => existsSync(p));

export async function startMosquitto(port: number, conf?: { dir: string; lines: string[] }): Promise<ChildProcess | undefined> {
  if (!haveMosquittoBinary) return undefined;
  // With configuration lines: a listener on loopback, anonymous, and those lines.
  const file = conf && join(conf.dir, `mosquitto-${port}.conf`);
  if (conf && file) writeFileSync(file, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', ...conf.lines, ''].join('\n'));
  const child = spawn('mosquitto', file ? ['-c', file] : ['-p', String(port)], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (up) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`mosquitto did not listen on ${port}`);
}

export const MOSQUITTO_BINARY_SKIP = 'SKIPPED: needs the mosquitto binary (apt-get install -y mosquitto) to restart a private broker';

/** Clear retained messages a test's agents left on the shared broker (their state topics). */
export async function clearRetained(topics: string[]): Promise<void> {
  const c = await mqtt.connectAsync(MOSQUITTO_URL, { clientId: `kagi-test-clear-${process.pid}-${Date.now()}` });
  for (const t of topics) await c.publishAsync(t, Buffer.alloc(0), { qos: 1, retain: true });
  await c.endAsync();
}
