/** User passwords as scrypt hashes: "scrypt$N$r$p$salt$hash" (hex). */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

const N = 16384, R = 8, P = 1, LEN = 32;

function run(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, LEN, { N: n, r, p, maxmem: 64 * 1024 * 1024 }, (e, k) => (e ? reject(e) : resolve(k))));
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const k = await run(password, salt, N, R, P);
  return ['scrypt', N, R, P, salt.toString('hex'), k.toString('hex')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [tag, n, r, p, salt, hash] = stored.split('$');
  if (tag !== 'scrypt' || !salt || !hash) return false;
  const k = await run(password, Buffer.from(salt, 'hex'), Number(n), Number(r), Number(p));
  const want = Buffer.from(hash, 'hex');
  return k.length === want.length && timingSafeEqual(k, want);
}
