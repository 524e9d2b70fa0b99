/**
 * Certificates a TLS test makes for itself with openssl, and a Mosquitto of
 * its own with a TLS listener (the one on 1883 is left alone).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { deadline } from './deadline.js';

export const haveOpenssl = spawnSync('sh', ['-c', 'command -v openssl']).status === 0;
export const OPENSSL_SKIP = 'SKIPPED: needs openssl to make the test certificates (apt-get install -y openssl; .ci/run installs it)';

export const DYNSEC_PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';
export const haveDynsecMosquitto = spawnSync('sh', ['-c', 'command -v mosquitto && command -v mosquitto_ctrl']).status === 0 && existsSync(DYNSEC_PLUGIN);
export const DYNSEC_SKIP = `SKIPPED: needs mosquitto, mosquitto_ctrl and ${DYNSEC_PLUGIN} (apt-get install -y mosquitto mosquitto-clients)`;

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

export interface TestCa {
  /** PEM paths. */
  caFile: string;
  certFile: string;
  keyFile: string;
  /** The server certificate's public-key pin, as openssl computes it (independently of kagi's code). */
  pin: string;
}

/**
 * A CA and a server certificate it signed for 127.0.0.1 and localhost
 * (P-256, two days), in `dir` under `name`-*.pem.
 */
export function makeCa(dir: string, name: string): TestCa {
  const f = (x: string) => join(dir, `${name}-${x}`);
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', `/CN=kagi test CA ${name}`]);
  openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  writeFileSync(f('ext.cnf'), 'subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n');
  openssl(dir, ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf')]);
  const r = spawnSync('sh', ['-c', `openssl x509 -pubkey -noout -in '${f('server.pem')}' | openssl pkey -pubin -outform der | sha256sum`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pin of ${f('server.pem')}: ${r.stderr}`);
  return { caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server.key'), pin: r.stdout.split(/\s/)[0]! };
}

async function listening(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), r(true)));
    s.once('error', () => r(false));
  });
}

/**
 * A Mosquitto of the test's own whose only listener is TLS on 127.0.0.1,
 * with the dynsec plugin (admin / admin-password). Stopped by its pid at
 * teardown.
 */
export async function tlsDynsecMosquitto(t: { teardown(fn: () => void | Promise<void>): void }, dir: string, ca: TestCa): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const ds = join(dir, 'dynsec.json');
  spawnSync('mosquitto_ctrl', ['dynsec', 'init', ds, 'admin', 'admin-password']);
  writeFileSync(join(dir, 'mosquitto.conf'), [
    `listener ${port} 127.0.0.1`, `certfile ${ca.certFile}`, `keyfile ${ca.keyFile}`, 'tls_version tlsv1.2',
    'allow_anonymous false', 'persistence false',
    // Started as root, Mosquitto would drop to its own user and could not read the test's private temp dir.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    `plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${ds}`, '',
  ].join('\n'));
  const child = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  t.teardown(async () => {
    if (child.exitCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await gone;
  });
  const end = Date.now() + deadline(5000);
  while (!(await listening(port))) {
    if (Date.now() > end || child.exitCode !== null) throw new Error(`mosquitto with TLS did not listen on ${port}: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `mqtts://127.0.0.1:${port}`, child };
}

/** A file's text (tests read PEMs to compare). */
export const text = (f: string): string => readFileSync(f, 'utf8');
