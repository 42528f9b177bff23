/**
 * API key verification beside JWT verification, in one process, through the hub's own verifier
 * chain (`withApiKeys(createCachingVerifier(createJoseVerifier(...)), createApiKeys(...))`) and the
 * real Redis store. Four passes, each over N distinct credentials:
 *   - JWT first sight: an ES256 signature check through jose (a new connection or a new token);
 *   - JWT again: the same tokens, now hits of the verified-token cache (a backend resending its token);
 *   - API key first sight: Redis GET of the record + HMAC-SHA-256;
 *   - API key again: the per-node record cache + HMAC-SHA-256 (a backend resending its key).
 * Prints µs of wall time and of process CPU per verification.
 *
 *   node --import tsx loadtest/apiKeyVerify.ts [--n 3000]
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadConfig } from '../hub/config/config.ts';
import { createJoseVerifier } from '../hub/auth/joseVerifier.ts';
import { createCachingVerifier } from '../hub/auth/cachingVerifier.ts';
import { createApiKeys, withApiKeys } from '../hub/access/apiKeys.ts';
import { apiKeyKey, createRedisApiKeyStore, orgApiKeysKey } from '../hub/access/redisApiKeyStore.ts';
import { createLogger } from '../hub/log.ts';
import { createTestIssuer } from '../hub/testing/issuer.ts';
import { printTable } from './lib/report.ts';
import { fixed } from './lib/stats.ts';

const { values } = parseArgs({ options: { n: { type: 'string', default: '3000' } } });
const N = Number(values.n);
if (!Number.isInteger(N) || N < 1) throw new Error('--n must be a positive integer');

async function timed(fn: () => Promise<void>): Promise<{ wallUs: number; cpuUs: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const cpu = process.cpuUsage(c0);
  return { wallUs: ((performance.now() - t0) * 1000) / N, cpuUs: (cpu.user + cpu.system) / N };
}

const issuer = await createTestIssuer();
const config = loadConfig({ ...issuer.env, ORGHUB_JWT_CACHE_SIZE: String(N * 2) });
const log = createLogger('warn');
const org = `bench-${randomBytes(4).toString('hex')}`;
const store = createRedisApiKeyStore(config.REDIS_URL);
const apiKeys = createApiKeys({ store, pepper: 'p'.repeat(32), maxPerOrg: N + 300, log });
const verifier = withApiKeys(createCachingVerifier(await createJoseVerifier(config), { max: N * 2, ttlMs: 600_000 }), apiKeys);

const tokens: string[] = [];
for (let i = 0; i < N; i++) tokens.push(await issuer.token(org, `svc-${i}`, ['service']));
await new Promise((r) => setTimeout(r, 200)); // the store's Redis connection
const keys: string[] = [];
for (let i = 0; i < N; i++) keys.push((await apiKeys.create(org, 'bench', { name: `k${i}`, roles: ['service'] })).key);

// warm-up on other credentials, so both paths are compiled before they are timed
const warmTokens = await Promise.all(Array.from({ length: 200 }, (_, i) => issuer.token(org, `warm-${i}`, ['service'])));
for (const t of warmTokens) await verifier.verify(t);
const warmKeys: string[] = [];
for (let i = 0; i < 200; i++) warmKeys.push((await apiKeys.create(org, 'bench', { name: 'w', roles: ['service'] })).key);
for (const k of warmKeys) await verifier.verify(k);

const each = (list: string[]) => async () => {
  for (const c of list) await verifier.verify(c);
};
const jwtFirst = await timed(each(tokens));
const jwtAgain = await timed(each(tokens));
const keyFirst = await timed(each(keys));
const keyAgain = await timed(each(keys));

process.stdout.write(`\nCredential verification through the hub's verifier chain, ${N} distinct credentials each, one process\n\n`);
printTable(
  ['path', 'wall µs/verify', 'CPU µs/verify'],
  [
    ['JWT, first sight (ES256 via jose)', fixed(jwtFirst.wallUs, 1), fixed(jwtFirst.cpuUs, 1)],
    ['JWT, again (verified-token cache)', fixed(jwtAgain.wallUs, 1), fixed(jwtAgain.cpuUs, 1)],
    ['API key, first sight (Redis GET + HMAC)', fixed(keyFirst.wallUs, 1), fixed(keyFirst.cpuUs, 1)],
    ['API key, again (record cache + HMAC)', fixed(keyAgain.wallUs, 1), fixed(keyAgain.cpuUs, 1)],
  ],
);

// clean up the bench org's keys in the shared Redis
const r = new Redis(config.REDIS_URL);
const ids = await r.smembers(orgApiKeysKey(org));
for (let i = 0; i < ids.length; i += 500) await r.del(...ids.slice(i, i + 500).map(apiKeyKey));
await r.del(orgApiKeysKey(org));
await r.quit();
await store.close();
