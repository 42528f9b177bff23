import type { Logger } from '../log.ts';
import { createWatchedRedis } from '../redis/watchedRedis.ts';
import type { OpenCommands } from './openCommands.ts';

/**
 * `<prefix>open:<org>` is a sorted set: command id → expiry (ms since the epoch). Admission drops the expired
 * members, then adds every id or none, in one script, so nodes admitting at once cannot overshoot.
 * The key expires with its latest member.
 */
const ADMIT_LUA = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local open = redis.call('ZCARD', KEYS[1])
local n = #ARGV - 3
if open + n > tonumber(ARGV[2]) then return {0, open} end
for i = 4, #ARGV do redis.call('ZADD', KEYS[1], ARGV[3], ARGV[i]) end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return {1, open + n}`;

export function createRedisOpenCommands(opts: { url: string; prefix: string; log: Logger }): OpenCommands {
  const { redis, close } = createWatchedRedis(opts.url, opts.log, { what: 'fleet open commands', meanwhile: 'the org-wide bound on open fleet commands is not enforced meanwhile (fail open)' });
  const key = (org: string) => `${opts.prefix}open:${org}`;
  return {
    async admit(org, ids, expiresAt, max) {
      if (ids.length === 0) return { ok: true, open: 0 };
      const [ok, open] = (await redis.eval(ADMIT_LUA, 1, key(org), Date.now(), max, expiresAt, ...ids)) as [number, number];
      return { ok: ok === 1, open: Number(open) };
    },
    async release(org, ids) {
      if (ids.length > 0) await redis.zrem(key(org), ...ids);
    },
    close,
  };
}
