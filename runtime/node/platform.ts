/** The device Platform on Node: node:crypto, MQTT.js, a state file. */
import type { Platform } from '../../device/platform.js';
import type { NumberStore } from '../../protocol/store.js';
import { MemoryNumberStore } from '../../protocol/store.js';
import { nodeCrypto } from './crypto.js';
import { healthyRandom } from '../../protocol/entropy.js';
import { FileNumberStore } from './file-numbers.js';
import { FileSecretStore } from './file-secrets.js';
import { MqttLink } from './mqtt.js';
import type { BrokerTls } from '../../protocol/broker-tls.js';

export interface NodePlatformOptions {
  brokerUrl: string;
  /** How an mqtts:// broker is checked: the file's brokerTls (a pin or a CA). */
  brokerTls?: BrokerTls;
  /** File for sequence counters; memory when absent (tests). */
  stateFile?: string;
  /** File for resumption tickets (0600); memory when absent. */
  secretsFile?: string;
  /** CONNECT credentials: kagi's counter MAC (default), static (dynsec), or none. */
  brokerAuth?: 'counter' | 'static' | 'none';
  /** Connect from this source address. */
  localAddress?: string;
  log?: Platform['log'];
  /** What to check when the control plane does not answer (the CLI names its flags). */
  brokerHint?: string;
}

export function nodePlatform(o: NodePlatformOptions): Platform {
  const crypto = nodeCrypto();
  healthyRandom((n) => crypto.randomBytes(n)); // the start-up test boards run too (protocol/entropy.ts)
  const numbers: NumberStore = o.stateFile ? new FileNumberStore(o.stateFile) : new MemoryNumberStore();
  const log = o.log ?? (() => {});
  return {
    crypto,
    now: () => Date.now(),
    numbers,
    ...(o.secretsFile ? { secrets: new FileSecretStore(o.secretsFile) } : {}),
    log,
    broker: o.brokerUrl,
    ...(o.brokerHint ? { brokerHint: o.brokerHint } : {}),
    async connect(l) {
      const link = new MqttLink({
        url: o.brokerUrl,
        clientId: l.clientId,
        crypto,
        secretKey: l.secretKey,
        brokerPublicKey: o.brokerAuth === 'none' ? undefined : l.brokerPublicKey,
        authMode: o.brokerAuth === 'static' ? 'static' : 'counter',
        numbers,
        subscriptions: [...l.subscriptions],
        onMessage: l.onMessage,
        ...(l.will ? { will: l.will } : {}),
        ...(l.onConnect ? { onConnect: l.onConnect } : {}),
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
        ...(o.brokerTls ? { tls: o.brokerTls } : {}),
        log,
      });
      await link.connect();
      return link;
    },
  };
}
