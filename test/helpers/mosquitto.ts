/** The Mosquitto already running on 127.0.0.1:1883, or a loud skip. */
import { createConnection } from 'node:net';

export const MOSQUITTO_URL = 'mqtt://127.0.0.1:1883';

export function mosquittoUp(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port: 1883 });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

export const MOSQUITTO_SKIP = 'SKIPPED: needs Mosquitto on 127.0.0.1:1883 (start it with: mosquitto -d -c /etc/mosquitto/mosquitto.conf)';
