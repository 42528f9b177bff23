import { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import { parseRule, ruleMember, type RevocationRule } from './revocation.ts';
import { ORG_FULL, type RevocationStore } from './revocationStore.ts';

/** All orgs that hold revocations (a set), so a node loads them without SCAN over the keyspace. */
export const REVOCATION_ORGS_KEY = 'orghub:revocation-orgs';
/** An org's revocations: a sorted set of rule JSON scored by `until`; the key expires with its last rule. */
export function revocationKey(org: string): string {
  return `orghub:revocations:${org}`;
}

/**
 * Atomic add: drops the org's expired rules, enforces the per-org bound (a rule that replaces one
 * of the same identity always fits), stores the rule, and sets the key to expire with its
 * longest-lived rule. KEYS: org key, orgs set. ARGV: now, member-prefix, rule JSON, until, max, org.
 */
const ADD_LUA = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local existing = nil
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #ARGV[2]) == ARGV[2] then existing = m end
end
if existing == nil and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return 0 end
if existing ~= nil then redis.call('ZREM', KEYS[1], existing) end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(last[2])) + 1000)
redis.call('SADD', KEYS[2], ARGV[6])
return 1`;

/** Drops an org from the set once its key has expired (atomic: a concurrent add keeps it). */
const FORGET_LUA = `if redis.call('EXISTS', KEYS[1]) == 0 then return redis.call('SREM', KEYS[2], ARGV[1]) end return 0`;

/**
 * The revocation store on Redis. Commands fail at once while Redis is down (no offline queue): the
 * hub must know it cannot see new revocations, not wait. The member of a rule is prefixed with its
 * identity (`jti:…`, `sub:…`), so a stronger rule replaces a weaker one in place.
 */
export function createRedisRevocationStore(url: string, log: Logger): RevocationStore {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (n) => Math.min(100 * n, 1000),
    lazyConnect: false,
  });
  const listeners: (() => void)[] = [];
  let wasDown = false;
  redis.on('ready', () => {
    if (wasDown) log.info('revocation store (Redis) is back; reloading revocations');
    wasDown = false;
    for (const l of listeners) l();
  });
  redis.on('close', () => {
    if (!wasDown) log.warn('revocation store (Redis) is down: new tokens are refused until it returns; revocations already known still apply');
    wasDown = true;
  });
  redis.on('error', () => {}); // reported through 'close'; ioredis would otherwise print each retry

  return {
    get up() {
      return redis.status === 'ready';
    },
    onUp(l) {
      listeners.push(l);
    },
    async add(r, maxPerOrg) {
      const json = JSON.stringify(r);
      const prefix = `${ruleMember(r)}\u0000`;
      const stored = await redis.eval(ADD_LUA, 2, revocationKey(r.org), REVOCATION_ORGS_KEY, Date.now(), prefix, prefix + json, r.until, maxPerOrg, r.org);
      return stored === 1 ? 'ok' : ORG_FULL;
    },
    async loadAll() {
      const now = Date.now();
      const orgs = await redis.smembers(REVOCATION_ORGS_KEY);
      const out: RevocationRule[] = [];
      for (let i = 0; i < orgs.length; i += 500) {
        const chunk = orgs.slice(i, i + 500);
        const pipe = redis.pipeline();
        for (const org of chunk) pipe.zrangebyscore(revocationKey(org), now, '+inf');
        const results = (await pipe.exec()) ?? [];
        const forget = redis.pipeline();
        for (let j = 0; j < chunk.length; j++) {
          const [err, members] = results[j] ?? [];
          if (err) throw err;
          const list = members as string[];
          if (list.length === 0) {
            forget.eval(FORGET_LUA, 2, revocationKey(chunk[j]!), REVOCATION_ORGS_KEY, chunk[j]!);
            continue;
          }
          for (const m of list) {
            let parsed: unknown;
            try {
              parsed = JSON.parse(m.slice(m.indexOf('\u0000') + 1));
            } catch {
              continue;
            }
            const rule = parseRule(parsed);
            // A rule stored under another org's key is never applied (the key decides the org).
            if (rule && rule.org === chunk[j]) out.push(rule);
          }
        }
        // Orgs whose rules all expired leave the set (one round trip per chunk, not per org).
        if (forget.length > 0) await forget.exec();
      }
      return out;
    },
    async close() {
      redis.disconnect();
    },
  };
}
