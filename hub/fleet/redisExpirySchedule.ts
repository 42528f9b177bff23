import type { Logger } from '../log.ts';
import { createWatchedRedis } from '../redis/watchedRedis.ts';
import type { DueCommand, ExpirySchedule } from './expirySchedule.ts';

/** `<prefix>expiry`: one sorted set, member `org\ndevice\ncommandId`, score = when it is due (ms). */
const CLAIM_LUA = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), m) end
return due`;

const member = (c: DueCommand) => `${c.org}\n${c.deviceId}\n${c.commandId}`;

export function createRedisExpirySchedule(opts: { url: string; prefix: string; log: Logger }): ExpirySchedule {
  const { redis, close } = createWatchedRedis(opts.url, opts.log, { what: 'fleet expiry schedule', meanwhile: 'expiries are recorded by the issuing node (and at the next delivery) meanwhile' });
  const key = `${opts.prefix}expiry`;
  return {
    async add(cmds, expiresAt) {
      if (cmds.length > 0) await redis.zadd(key, ...cmds.flatMap((c) => [expiresAt, member(c)]));
    },
    async remove(cmd) {
      await redis.zrem(key, member(cmd));
    },
    async claimDue(now, max, leaseMs) {
      const due = (await redis.eval(CLAIM_LUA, 1, key, now, max, leaseMs)) as string[];
      return due.flatMap((m) => {
        const [org, deviceId, commandId] = m.split('\n');
        return org && deviceId && commandId ? [{ org, deviceId, commandId }] : [];
      });
    },
    close,
  };
}
