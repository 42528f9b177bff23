import { createWatchedRedis } from '../redis/watchedRedis.ts';
import { isValidTopic, matches } from '../acl/topic.ts';
import type { Logger } from '../log.ts';
import { decodeRetained, encodeRetained, type RetainedMessage, type RetainedStore } from './retained.ts';

export { decodeRetained, encodeRetained };

/** Redis key of an org's retained messages: a hash of topic → encoded message. */
export function retainedKey(org: string): string {
  return `orghub:retained:${org}`;
}

/**
 * Redis key of the index of an org's retained topics: a sorted set (all scores 0, so ordered by
 * bytes) holding exactly the hash's fields. A SUBSCRIBE reads the range of topics that start with
 * its filter's literal prefix instead of the whole hash.
 */
export function retainedIndexKey(org: string): string {
  return `orghub:retained-topics:${org}`;
}

/** Redis key of the bytes an org's retained values take (the sum of the hash's value lengths). */
export function retainedBytesKey(org: string): string {
  return `orghub:retained-bytes:${org}`;
}

/** Recomputes the byte count of an org that has none (written before it existed, or lost). KEYS[3]. */
const ENSURE_BYTES_LUA = `
if redis.call('EXISTS', KEYS[3]) == 0 then
  local total = 0
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do total = total + redis.call('HSTRLEN', KEYS[1], f) end
  redis.call('SET', KEYS[3], total)
end`;

/**
 * Rebuilds the index of an org whose hash has none (written before the index existed, or the
 * index key was lost): called at the start of every script, a no-op once the index exists.
 */
const ENSURE_INDEX_LUA = `
if redis.call('EXISTS', KEYS[2]) == 0 then
  local fields = redis.call('HKEYS', KEYS[1])
  for i = 1, #fields, 500 do
    local args = {}
    for j = i, math.min(i + 499, #fields) do
      args[#args + 1] = 0
      args[#args + 1] = fields[j]
    end
    redis.call('ZADD', KEYS[2], unpack(args))
  end
end`;

/**
 * Store unless the topic is new and the org is at its topic cap (0), or the value would take the
 * org past ARGV[4] bytes (-1; 0 = no byte cap; a replacement that does not grow is always allowed).
 * Atomic, so nodes cannot race past either cap.
 */
const RETAIN_LUA = `${ENSURE_INDEX_LUA}
${ENSURE_BYTES_LUA}
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if not exists and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
local delta = string.len(ARGV[2]) - redis.call('HSTRLEN', KEYS[1], ARGV[1])
local max = tonumber(ARGV[4])
if max > 0 and delta > 0 and tonumber(redis.call('GET', KEYS[3])) + delta > max then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('INCRBY', KEYS[3], delta)
return 1`;

/** An empty retained payload deletes the topic from the hash, the index and the byte count. */
const DELETE_LUA = `${ENSURE_INDEX_LUA}
${ENSURE_BYTES_LUA}
redis.call('DECRBY', KEYS[3], redis.call('HSTRLEN', KEYS[1], ARGV[1]))
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`;

/** The org's retained topics in [ARGV[1], ARGV[2]] (ZRANGEBYLEX bounds). */
const RANGE_LUA = `${ENSURE_INDEX_LUA}
return redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2])`;

/**
 * The segments of a filter before its first wildcard, as a topic prefix: every topic the filter
 * matches starts with it. `devices/d1/#` → `devices/d1/`; `a/+/b` → `a/`; `#`, `+/x` and a filter
 * without wildcards (read directly instead) → ``.
 */
export function literalPrefix(pattern: string): string {
  const segments = pattern.split('/');
  const wildcard = segments.findIndex((seg) => seg === '+' || seg === '#');
  return wildcard <= 0 ? '' : `${segments.slice(0, wildcard).join('/')}/`;
}

/**
 * Retained messages in Redis (`orghub:retained:<org>`, field = topic, and its topic index
 * `orghub:retained-topics:<org>`). Commands fail fast while Redis is down (no offline queue), so a
 * PUBLISH with retain is refused rather than parked. Every write touches both keys in one script.
 */
export function createRedisRetainedStore(url: string, log: Logger, maxPerOrg: number, maxBytesOf: (org: string) => number = () => 0): RetainedStore {
  const conn = createWatchedRedis(url, log, { what: 'retained MQTT messages' });
  const { redis } = conn;

  return {
    async set(org, m) {
      const keys = [retainedKey(org), retainedIndexKey(org), retainedBytesKey(org)] as const;
      if (m.payload.length === 0) {
        await redis.eval(DELETE_LUA, 3, ...keys, m.topic);
        return true;
      }
      return (await redis.eval(RETAIN_LUA, 3, ...keys, m.topic, encodeRetained(m), maxPerOrg, maxBytesOf(org))) === 1;
    },
    async match(org, pattern) {
      const out: RetainedMessage[] = [];
      for await (const page of this.matchPages!(org, pattern, Infinity)) out.push(...page);
      return out;
    },
    async *matchPages(org, pattern, pageSize) {
      const key = retainedKey(org);
      let topics: string[];
      if (isValidTopic(pattern)) {
        // a filter without wildcards names one topic
        topics = [pattern];
      } else {
        // only the index range that can match, then the exact check (`+`, `#`, the `$` rule)
        const prefix = literalPrefix(pattern);
        const range = (await redis.eval(RANGE_LUA, 2, key, retainedIndexKey(org), prefix ? `[${prefix}` : '-', prefix ? `[${prefix}\xff` : '+')) as string[];
        topics = range.filter((t) => isValidTopic(t) && matches(pattern, t));
      }
      // Values are read a page at a time, so a subscriber to `#` of a large org never makes the
      // node hold every retained payload at once; the caller paces the pages.
      for (let i = 0; i < topics.length; i += pageSize) {
        const slice = topics.slice(i, i + pageSize);
        const values = await redis.hmgetBuffer(key, ...slice);
        const page: RetainedMessage[] = [];
        slice.forEach((topic, j) => {
          const v = values[j];
          const m = v ? decodeRetained(topic, v) : undefined;
          if (m) page.push(m);
        });
        if (page.length) yield page;
      }
    },
    ping: conn.ping,
    close: conn.close,
  };
}
