import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { HistoryMessage, HistoryRead, HistoryStore, Retention, StreamPosition } from './history.ts';

/**
 * Redis layout, under a prefix P (ORGHUB_HISTORY_PREFIX): `P:s:<org>:<topic>` is a Redis stream
 * whose entry ids are `<offset>-0` (fields d = payload, c = content type, f = from, t = ts), and
 * `P:m:<org>:<topic>` a hash with the epoch and the top offset. Both keys get the namespace TTL on
 * every append, so they expire together; the next append then starts a new epoch at offset 1.
 * `P:t:<org>` is a sorted set of the org's topics scored by when their stream expires: a publish or
 * subscribe that would start a stream past `maxTopicsPerOrg` live ones is refused (`limit`).
 */
const COUNT_TOPIC_LUA = `
local function admit_topic(now, max, topic)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local n = redis.call('ZCARD', KEYS[3])
  if not redis.call('ZSCORE', KEYS[3], topic) and n >= tonumber(max) then
    return redis.error_reply('ORGHUB_TOPIC_LIMIT ' .. n)
  end
end
local function keep_topic(now, ttl, topic)
  redis.call('ZADD', KEYS[3], tonumber(now) + tonumber(ttl), topic)
  local last = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[3], last[2])
end
`;

const APPEND_LUA = `${COUNT_TOPIC_LUA}
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  local refused = admit_topic(ARGV[8], ARGV[9], ARGV[10])
  if refused then return refused end
  epoch = ARGV[6]
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local off = redis.call('HINCRBY', KEYS[2], 'top', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], off .. '-0', 'd', ARGV[3], 'c', ARGV[4], 'f', ARGV[5], 't', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
keep_topic(ARGV[8], ARGV[2], ARGV[10])
return {off, epoch}`;

/**
 * Top, epoch, earliest kept id and the entries after ARGV[1], read in one step so they agree. A
 * stream not started yet gets its epoch now (with the TTL), so that a subscriber from before the
 * first message can resume across it.
 */
const READ_LUA = `${COUNT_TOPIC_LUA}
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  local refused = admit_topic(ARGV[5], ARGV[6], ARGV[7])
  if refused then return refused end
  epoch = ARGV[3]
  redis.call('HSET', KEYS[2], 'epoch', epoch)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  keep_topic(ARGV[5], ARGV[4], ARGV[7])
end
local top = tonumber(redis.call('HGET', KEYS[2], 'top') or '0')
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local earliest = top + 1
if #first > 0 then earliest = tonumber(string.match(first[1][1], '^(%d+)')) end
local entries = {}
if tonumber(ARGV[1]) < top then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
end
return {epoch, top, earliest, entries}`;

export interface RedisHistoryOptions {
  url: string;
  prefix: string;
  log: Logger;
  /** Distinct live streams per org (ORGHUB_HISTORY_MAX_TOPICS). */
  maxTopicsPerOrg: number;
}

/** The script's refusal as the documented `limit` error; anything else passes through. */
function topicLimit(err: unknown, max: number): unknown {
  const m = /ORGHUB_TOPIC_LIMIT (\d+)/.exec((err as Error)?.message ?? '');
  return m ? new HubError('limit', `the org keeps history for ${m[1]} topics and may keep at most ${max} (ORGHUB_HISTORY_MAX_TOPICS); a topic counts until its history expires`) : err;
}

export function createRedisHistory(opts: RedisHistoryOptions): HistoryStore {
  const P = opts.prefix;
  // Buffers come back as Buffers: payloads are bytes, not necessarily UTF-8.
  const redis = new Redis(opts.url, { maxRetriesPerRequest: 2 });
  redis.on('error', (err) => opts.log.debug({ err: err.message }, 'history redis error'));
  const s = (org: string, topic: string) => `${P}s:${org}:${topic}`;
  const m = (org: string, topic: string) => `${P}m:${org}:${topic}`;
  const t = (org: string) => `${P}t:${org}`;
  const max = opts.maxTopicsPerOrg;
  const newEpoch = () => randomBytes(6).toString('base64url');

  return {
    async append(org, topic, msg, r: Retention): Promise<StreamPosition> {
      const [off, epoch] = (await redis
        .eval(APPEND_LUA, 3, s(org, topic), m(org, topic), t(org), r.size, r.ttlMs, Buffer.from(msg.payload), msg.contentType, msg.from ?? '', newEpoch(), msg.ts, Date.now(), max, topic)
        .catch((err) => Promise.reject(topicLimit(err, max)))) as [number, string];
      return { offset: Number(off), epoch };
    },
    async read(org, topic, after, limit, r: Retention): Promise<HistoryRead> {
      const [epoch, top, earliest, entries] = (await redis
        .callBuffer('EVAL', READ_LUA, 3, s(org, topic), m(org, topic), t(org), after, limit, newEpoch(), r.ttlMs, Date.now(), max, topic)
        .catch((err) => Promise.reject(topicLimit(err, max)))) as [Buffer, number, number, [Buffer, Buffer[]][]];
      const messages: HistoryMessage[] = entries.map(([id, fields]) => {
        const f = new Map<string, Buffer>();
        for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i].toString(), fields[i + 1]);
        const from = f.get('f')?.toString();
        return { offset: Number.parseInt(id.toString(), 10), payload: f.get('d') ?? Buffer.alloc(0), contentType: f.get('c')?.toString() === 'bytes' ? 'bytes' : 'json', from: from || undefined, ts: Number(f.get('t')?.toString() ?? 0) };
      });
      return { messages, top: { offset: Number(top), epoch: epoch.toString() }, earliest: Number(earliest) };
    },
    async ping() {
      return (await redis.ping()) === 'PONG';
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
