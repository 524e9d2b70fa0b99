/** Both crypto backends, so every vector test runs on each. */
import { portableCrypto } from '../../protocol/crypto/portable.js';
import { nodeCrypto } from '../../runtime/node/crypto.js';
import type { Crypto } from '../../protocol/crypto/backend.js';

export const backends: Crypto[] = [portableCrypto(), nodeCrypto()];
