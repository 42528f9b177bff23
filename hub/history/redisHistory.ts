import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import type { HistoryMessage, HistoryRead, HistoryStore, Retention, StreamPosition } from './history.ts';

/**
 * Redis layout, under a prefix P (ORGHUB_HISTORY_PREFIX): `P:s:<org>:<topic>` is a Redis stream
 * whose entry ids are `<offset>-0` (fields d = payload, c = content type, f = from, t = ts), and
 * `P:m:<org>:<topic>` a hash with the epoch and the top offset. Both keys get the namespace TTL on
 * every append, so they expire together; the next append then starts a new epoch at offset 1.
 */
const APPEND_LUA = `
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local off = redis.call('HINCRBY', KEYS[2], 'top', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], off .. '-0', 'd', ARGV[3], 'c', ARGV[4], 'f', ARGV[5], 't', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {off, epoch}`;

/**
 * Top, epoch, earliest kept id and the entries after ARGV[1], read in one step so they agree. A
 * stream not started yet gets its epoch now (with the TTL), so that a subscriber from before the
 * first message can resume across it.
 */
const READ_LUA = `
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[2], 'epoch', epoch)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
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
}

export function createRedisHistory(opts: RedisHistoryOptions): HistoryStore {
  const P = opts.prefix;
  // Buffers come back as Buffers: payloads are bytes, not necessarily UTF-8.
  const redis = new Redis(opts.url, { maxRetriesPerRequest: 2 });
  redis.on('error', (err) => opts.log.debug({ err: err.message }, 'history redis error'));
  const s = (org: string, topic: string) => `${P}s:${org}:${topic}`;
  const m = (org: string, topic: string) => `${P}m:${org}:${topic}`;
  const newEpoch = () => randomBytes(6).toString('base64url');

  return {
    async append(org, topic, msg, r: Retention): Promise<StreamPosition> {
      const [off, epoch] = (await redis.eval(APPEND_LUA, 2, s(org, topic), m(org, topic), r.size, r.ttlMs, Buffer.from(msg.payload), msg.contentType, msg.from ?? '', newEpoch(), msg.ts)) as [number, string];
      return { offset: Number(off), epoch };
    },
    async read(org, topic, after, limit, r: Retention): Promise<HistoryRead> {
      const [epoch, top, earliest, entries] = (await redis.callBuffer('EVAL', READ_LUA, 2, s(org, topic), m(org, topic), after, limit, newEpoch(), r.ttlMs)) as [Buffer, number, number, [Buffer, Buffer[]][]];
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
