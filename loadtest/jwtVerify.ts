/**
 * ES256 verification cost, one process, no network: jose's `jwtVerify` (WebCrypto underneath, as
 * the hub uses it) beside Node's synchronous `crypto.verify` of a P-256 signature, the floor for any
 * ES256 check. Prints µs of wall time and of process CPU per verification.
 *
 *   node --import tsx loadtest/jwtVerify.ts [--tokens 3000]
 */
import { parseArgs } from 'node:util';
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { generateKeyPair, SignJWT, jwtVerify } from 'jose';
import { printTable } from './lib/report.ts';
import { fixed } from './lib/stats.ts';

const { values } = parseArgs({ options: { tokens: { type: 'string', default: '3000' } } });
const N = Number(values.tokens);
if (!Number.isInteger(N) || N < 1) throw new Error('--tokens must be a positive integer');

async function timed(fn: () => Promise<void> | void): Promise<{ wallUs: number; cpuUs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const cpu = process.cpuUsage(c0);
  return { wallUs: ((performance.now() - t0) * 1000) / N, cpuUs: (cpu.user + cpu.system) / N };
}

const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
const tokens: string[] = [];
for (let i = 0; i < N; i++) {
  tokens.push(await new SignJWT({ org: 'bench', i }).setProtectedHeader({ alg: 'ES256' }).setIssuer('bench').setAudience('orghub').setExpirationTime('1h').sign(privateKey));
}
// warm both paths
for (const t of tokens.slice(0, 200)) await jwtVerify(t, publicKey, { algorithms: ['ES256'], issuer: 'bench', audience: 'orghub' });
const jose = await timed(async () => {
  for (const t of tokens) await jwtVerify(t, publicKey, { algorithms: ['ES256'], issuer: 'bench', audience: 'orghub' });
});

// the same tokens' signatures, checked with node:crypto (JWS signing input, raw r||s signature)
const keyObject = crypto.KeyObject.from(publicKey as CryptoKey);
const parts = tokens.map((t) => {
  const dot = t.lastIndexOf('.');
  return { input: Buffer.from(t.slice(0, dot)), sig: Buffer.from(t.slice(dot + 1), 'base64url') };
});
const native = await timed(() => {
  for (const p of parts) {
    if (!crypto.verify('sha256', p.input, { key: keyObject, dsaEncoding: 'ieee-p1363' }, p.sig)) throw new Error('signature check failed');
  }
});

process.stdout.write(`\nES256 verification, ${N} distinct tokens, one process\n\n`);
printTable(
  ['check', 'wall µs/token', 'CPU µs/token'],
  [
    ['jose jwtVerify (WebCrypto; signature + claims)', fixed(jose.wallUs, 1), fixed(jose.cpuUs, 1)],
    ['node:crypto verify (signature only)', fixed(native.wallUs, 1), fixed(native.cpuUs, 1)],
  ],
);
