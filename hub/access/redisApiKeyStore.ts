import { Redis } from 'ioredis';
import type { ApiKeyRecord } from './apiKey.ts';
import type { ApiKeyStore } from './apiKeyStore.ts';

/** One key: a string holding the record's JSON (the record is small and always read whole). */
export function apiKeyKey(id: string): string {
  return `orghub:apikey:${id}`;
}
/** An org's key ids (a set): the per-org bound and GET /v1/apikeys. */
export function orgApiKeysKey(org: string): string {
  return `orghub:apikeys:${org}`;
}

/** Revoked keys stay listed this long, then are forgotten. */
const REVOKED_KEEP_MS = 7 * 24 * 3600_000;

/** KEYS: org set, key. ARGV: max, id, json. At the bound, ids whose record has expired are dropped first. */
const CREATE_LUA = `
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if redis.call('EXISTS', 'orghub:apikey:' .. id) == 0 then redis.call('SREM', KEYS[1], id) end
  end
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
end
if redis.call('SET', KEYS[2], ARGV[3], 'NX') == false then return -1 end
redis.call('SADD', KEYS[1], ARGV[2])
return 1`;

/** KEYS: key. ARGV: org, revokedAt, keep ms. Returns the updated JSON, or nil when absent or another org's. */
const REVOKE_LUA = `
local v = redis.call('GET', KEYS[1])
if not v then return nil end
local r = cjson.decode(v)
if r.org ~= ARGV[1] then return nil end
if not r.revokedAt then r.revokedAt = tonumber(ARGV[2]) end
local out = cjson.encode(r)
redis.call('SET', KEYS[1], out, 'PX', ARGV[3])
return out`;

/** KEYS: key. ARGV: at. Keeps the TTL (revoked keys) and never resurrects a deleted key. */
const TOUCH_LUA = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local r = cjson.decode(v)
r.lastUsedAt = tonumber(ARGV[1])
redis.call('SET', KEYS[1], cjson.encode(r), 'KEEPTTL')
return 1`;

function parse(v: string | null): ApiKeyRecord | undefined {
  if (!v) return undefined;
  try {
    const r = JSON.parse(v) as ApiKeyRecord;
    if (typeof r.id !== 'string' || typeof r.org !== 'string' || typeof r.hash !== 'string' || !Array.isArray(r.roles)) return undefined;
    // Lua's cjson writes an empty array back as {}: roles are never empty, but acl lists may be.
    if (r.acl) for (const k of ['pub', 'sub', 'cmd'] as const) if (r.acl[k] !== undefined && !Array.isArray(r.acl[k])) r.acl[k] = [];
    return r;
  } catch {
    return undefined;
  }
}

export function createRedisApiKeyStore(url: string): ApiKeyStore {
  const redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: (n) => Math.min(100 * n, 1000) });
  redis.on('error', () => {});
  return {
    async create(rec, maxPerOrg) {
      const r = await redis.eval(CREATE_LUA, 2, orgApiKeysKey(rec.org), apiKeyKey(rec.id), maxPerOrg, rec.id, JSON.stringify(rec));
      if (r === -1) throw new Error('api key id collision');
      return r === 1;
    },
    async get(id) {
      return parse(await redis.get(apiKeyKey(id)));
    },
    async list(org) {
      const ids = await redis.smembers(orgApiKeysKey(org));
      if (ids.length === 0) return [];
      const values = await redis.mget(ids.map(apiKeyKey));
      // The org of the record decides, never the set it was found in.
      return values.map(parse).filter((r): r is ApiKeyRecord => r !== undefined && r.org === org).sort((a, b) => a.createdAt - b.createdAt);
    },
    async revoke(org, id, at) {
      return parse((await redis.eval(REVOKE_LUA, 1, apiKeyKey(id), org, at, REVOKED_KEEP_MS)) as string | null);
    },
    async touch(id, at) {
      await redis.eval(TOUCH_LUA, 1, apiKeyKey(id), at);
    },
    async close() {
      redis.disconnect();
    },
  };
}
