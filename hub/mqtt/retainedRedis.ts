import { Redis } from 'ioredis';
import { isValidTopic, matches } from '../acl/topic.ts';
import type { Logger } from '../log.ts';
import { decodeRetained, encodeRetained, type RetainedMessage, type RetainedStore } from './retained.ts';

export { decodeRetained, encodeRetained };

/** Redis key of an org's retained messages: a hash of topic → encoded message. */
export function retainedKey(org: string): string {
  return `orghub:retained:${org}`;
}

/**
 * Retained messages in Redis (`orghub:retained:<org>`, field = topic). Commands fail fast while
 * Redis is down (no offline queue), so a PUBLISH with retain is refused rather than parked.
 */
/** Store unless the topic is new and the org is at its cap; atomic, so nodes cannot race past it. */
const RETAIN_LUA = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0`;

export function createRedisRetainedStore(url: string, log: Logger, maxPerOrg: number): RetainedStore {
  const redis = new Redis(url, {
    lazyConnect: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 3000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  let warned = false;
  let closing = false;
  redis.on('error', (err) => {
    // Closing while still connecting (the bridge found its port busy) is not an outage.
    if (closing) return;
    if (!warned) log.warn({ err: err.message }, 'Redis (retained MQTT messages) unreachable; retrying');
    warned = true;
  });
  redis.on('ready', () => {
    if (warned) log.info('Redis (retained MQTT messages) reachable again');
    warned = false;
  });

  return {
    async set(org, m) {
      const key = retainedKey(org);
      if (m.payload.length === 0) {
        await redis.hdel(key, m.topic);
        return true;
      }
      return (await redis.eval(RETAIN_LUA, 1, key, m.topic, encodeRetained(m), maxPerOrg)) === 1;
    },
    async match(org, pattern) {
      const all = await redis.hgetallBuffer(retainedKey(org));
      const out: RetainedMessage[] = [];
      for (const topic of Object.keys(all)) {
        if (!isValidTopic(topic) || !matches(pattern, topic)) continue;
        const m = decodeRetained(topic, all[topic]);
        if (m) out.push(m);
      }
      return out;
    },
    async ping() {
      if (redis.status !== 'ready') return false;
      try {
        return (await redis.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    async close() {
      closing = true;
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
