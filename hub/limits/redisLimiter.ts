import { Redis } from 'ioredis';
import { createWatchedRedis } from '../redis/watchedRedis.ts';
import type { Logger } from '../log.ts';
import type { Limiter, SlotWant } from './limiter.ts';

/**
 * Token bucket in a hash {t: tokens, ts: ms}. Redis's own clock (TIME), so nodes with skewed clocks
 * agree. Grants up to ARGV[3] tokens when at least ARGV[4] are there; else 0 and the ms until
 * ARGV[4] will be. The key expires once a full bucket would have refilled (nothing to remember).
 */
const TAKE_LUA = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local min = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local granted = 0
local wait = 0
if tokens >= min then
  granted = math.min(want, math.floor(tokens))
  tokens = tokens - granted
else
  wait = math.ceil((min - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {granted, wait}`;

/**
 * Connection slots: KEYS[1] is the hash node → heartbeat expiry (ms), KEYS[2..] the slot sets, each a
 * hash node → holders. Counts only live nodes (dead ones are removed on the way; the caller's own
 * node always counts). If any set already holds its ARGV[i] (> 0) holders, returns its index
 * (0-based, in KEYS[2..]) and adds nothing; else adds one holder for ARGV[1] to every set and
 * returns -1. All or nothing in one script: the org's and the user's slots in one round trip.
 */
const ACQUIRE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node = ARGV[1]
for k = 2, #KEYS do
  local max = tonumber(ARGV[k])
  local counts = redis.call('HGETALL', KEYS[k])
  local total = 0
  for i = 1, #counts, 2 do
    local holder = counts[i]
    local exp = tonumber(redis.call('HGET', KEYS[1], holder) or '0')
    if holder ~= node and exp < now then
      redis.call('HDEL', KEYS[k], holder)
    else
      total = total + tonumber(counts[i + 1])
    end
  end
  if max > 0 and total >= max then return k - 2 end
end
for k = 2, #KEYS do redis.call('HINCRBY', KEYS[k], node, 1) end
return -1`;

const RELEASE_LUA = `
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1`;

const COUNT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #counts, 2 do
  if tonumber(redis.call('HGET', KEYS[2], counts[i]) or '0') >= now then total = total + tonumber(counts[i + 1]) end
end
return total`;

/** Marks ARGV[1] alive for ARGV[2] ms; then ARGV[3..] are (key, count) pairs it holds. */
const HEARTBEAT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now + tonumber(ARGV[2]))
for i = 3, #ARGV, 2 do
  local n = tonumber(ARGV[i + 1])
  if n > 0 then redis.call('HSET', ARGV[i], ARGV[1], n) else redis.call('HDEL', ARGV[i], ARGV[1]) end
end
return 1`;

type Cmd = (...args: (string | number)[]) => Promise<unknown>;
interface LimitRedis extends Redis {
  limTake: Cmd;
  limAcquire: Cmd;
  limRelease: Cmd;
  limCount: Cmd;
  limHeartbeat: Cmd;
}

/**
 * The Limiter on Redis (`<prefix>b:...` buckets, `<prefix>c:...` slot sets, `<prefix>nodes`).
 * Commands fail fast while Redis is down (no offline queue, 1 s timeout): the lease layer then
 * falls back to local buckets and retries Redis in the background.
 */
export function createRedisLimiter(url: string, log: Logger, prefix = 'orghub:lim:'): Limiter & { readonly redis: Redis; ready(): Promise<void> } {
  const conn = createWatchedRedis(url, log, {
    what: 'rate limits, connection caps',
    meanwhile: 'limits fall back to local buckets',
    maxRetriesPerRequest: 0,
    commandTimeout: 1000,
    // The scripts of concurrent CONNECTs and upgrades (a reconnect storm) leave in one write.
    autoPipelining: true,
  });
  const redis = conn.redis as LimitRedis;
  redis.defineCommand('limTake', { numberOfKeys: 1, lua: TAKE_LUA });
  redis.defineCommand('limAcquire', { lua: ACQUIRE_LUA });
  redis.defineCommand('limRelease', { numberOfKeys: 1, lua: RELEASE_LUA });
  redis.defineCommand('limCount', { numberOfKeys: 2, lua: COUNT_LUA });
  redis.defineCommand('limHeartbeat', { numberOfKeys: 1, lua: HEARTBEAT_LUA });
  const nodesKey = `${prefix}nodes`;
  const acquireAll = async (want: readonly SlotWant[], node: string): Promise<number> => {
    if (want.length === 0) return -1;
    return Number(await redis.limAcquire(want.length + 1, nodesKey, ...want.map((s) => s.key), node, ...want.map((s) => s.max)));
  };

  return {
    redis,
    ready: () => (redis.status === 'ready' ? Promise.resolve() : new Promise((r) => redis.once('ready', () => r()))),
    async take(key, want, minGrant, spec) {
      if (spec.rate === 0) return { granted: want, retryAfterMs: 0 };
      const [granted, wait] = (await redis.limTake(key, spec.rate, spec.burst, want, minGrant)) as [number, number];
      return { granted, retryAfterMs: wait };
    },
    async acquire(key, node, max) {
      return (await acquireAll([{ key, max }], node)) < 0;
    },
    acquireAll,
    async release(key, node) {
      await redis.limRelease(key, node);
    },
    async heartbeat(node, held, ttlMs) {
      const args: (string | number)[] = [node, ttlMs];
      for (const [k, n] of held) args.push(k, n);
      await redis.limHeartbeat(nodesKey, ...args);
    },
    async count(key) {
      return Number(await redis.limCount(key, nodesKey));
    },
    ping: conn.ping,
    close: conn.close,
  };
}
