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
export function createRedisRetainedStore(url: string, log: Logger): RetainedStore {
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
      if (m.payload.length === 0) await redis.hdel(key, m.topic);
      else await redis.hset(key, m.topic, encodeRetained(m));
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
