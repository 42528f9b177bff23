import { createWatchedRedis } from '../redis/watchedRedis.ts';
import type { Logger } from '../log.ts';
import { LIVE_MARGIN_MS, NODE_ALIVE_MS, type Adopted, type SessionInfo, type SessionRef, type SessionStore, type StoredSession } from './sessionStore.ts';

/** Redis key of a session record (a hash: owner, cid, subs, q2, drops, last, exp). */
export function sessionKey(ref: SessionRef): string {
  return `orghub:mqtt:session:${ref.org}:${ref.key}`;
}

/** Redis key of a session's queue (a list of encoded entries, oldest first). */
export function queueKey(ref: SessionRef): string {
  return `orghub:mqtt:queue:${ref.org}:${ref.key}`;
}

/** Redis key of an org's session index: a sorted set of session keys scored by the expiry deadline (ms). */
export function sessionIndexKey(org: string): string {
  return `orghub:mqtt:sessions:${org}`;
}

/** Redis key of a node's heartbeat (present while it beats). */
export function aliveKey(node: string): string {
  return `orghub:mqtt:alive:${node}`;
}

/** Redis key of the set of sessions (`<org> NUL <key>`) parked with an offline queue on `node`. */
export function parkedKey(node: string): string {
  return `orghub:mqtt:parked:${node}`;
}

/** Redis key of the set of nodes that have parked sessions (each checked for a heartbeat). */
export const NODES_KEY = 'orghub:mqtt:nodes';

/** KEYS rec, queue, index. ARGV owner, clean, cid, expiryMs, now, liveMarginMs, maxSessions, member, indexTtlMs, unlessLive. */
const CLAIM_LUA = `
if ARGV[10] == '1' then
  local held = redis.call('HGET', KEYS[1], 'owner')
  if held and string.sub(held, 1, 5) == 'live:' and held ~= ARGV[1] then return {-2} end
end
if ARGV[2] == '1' then redis.call('DEL', KEYS[1], KEYS[2]) end
local present = redis.call('EXISTS', KEYS[1]) == 1
local now = tonumber(ARGV[5])
if not present then
  redis.call('DEL', KEYS[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZSCORE', KEYS[3], ARGV[8]) == false and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then return {-1} end
end
local rec = redis.call('HMGET', KEYS[1], 'subs', 'q2', 'drops')
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'cid', ARGV[3], 'last', ARGV[5], 'exp', ARGV[4])
local msgs = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
-- One reply string (each entry behind its 4-byte length) instead of one bulk string per entry.
local packed = {}
for i, m in ipairs(msgs) do
  packed[2 * i - 1] = struct.pack('>I4', #m)
  packed[2 * i] = m
end
local ttl = tonumber(ARGV[4]) + tonumber(ARGV[6])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[8])
redis.call('PEXPIRE', KEYS[3], ARGV[9])
return {present and 1 or 0, rec[1] or '', rec[2] or '', rec[3] or '0', table.concat(packed)}`;

/** KEYS rec. ARGV owner, subs. */
const SUBS_LUA = `
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('HSET', KEYS[1], 'subs', ARGV[2]) end
return 0`;

/** KEYS rec, queue, index. ARGV owner, next, subs, q2, expiryMs, now, maxQueue, member, entries (oldest first)... */
const PARK_LUA = `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'subs', ARGV[3], 'q2', ARGV[4], 'last', ARGV[6], 'exp', ARGV[5])
for i = #ARGV, 9, -1 do redis.call('LPUSH', KEYS[2], ARGV[i]) end
local over = redis.call('LLEN', KEYS[2]) - tonumber(ARGV[7])
if over > 0 then
  redis.call('LTRIM', KEYS[2], over, -1)
  redis.call('HINCRBY', KEYS[1], 'drops', over)
else
  over = 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], tonumber(ARGV[6]) + tonumber(ARGV[5]), ARGV[8])
return over`;

/** KEYS rec, from (the dead node's parked set), to (this node's). ARGV member, dead queue prefix, new owner, index TTL ms. */
const ADOPT_LUA = `
redis.call('SREM', KEYS[2], ARGV[1])
local o = redis.call('HGET', KEYS[1], 'owner')
if not o or string.sub(o, 1, #ARGV[2]) ~= ARGV[2] then return false end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return false end
redis.call('HSET', KEYS[1], 'owner', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return {redis.call('HGET', KEYS[1], 'subs') or '', ttl}`;

/** KEYS rec, queue. ARGV owner, maxQueue, entries... */
const APPEND_LUA = `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return {-1, 0} end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
local n = redis.call('LLEN', KEYS[2])
local over = n - tonumber(ARGV[2])
if over > 0 then
  redis.call('LTRIM', KEYS[2], over, -1)
  redis.call('HINCRBY', KEYS[1], 'drops', over)
  n = n - over
else
  over = 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return {n, over}`;

/** Entries per APPEND script call (Lua's unpack has a stack limit). */
const APPEND_CHUNK = 500;

/** The entries of a claim reply: each behind its 4-byte length, as views into the reply (no copy). */
export function unpackEntries(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i + 4 <= b.length) {
    const end = i + 4 + b.readUInt32BE(i);
    if (end > b.length) break;
    out.push(b.subarray(i + 4, end));
    i = end;
  }
  return out;
}

/** `s` as JSON, or `d` when it is empty or not JSON. */
function parseOr<T>(s: string, d: T): T {
  try {
    return s ? (JSON.parse(s) as T) : d;
  } catch {
    return d;
  }
}

function parseSession(owner: string, subs: string, q2: string, drops: string): StoredSession {
  return { owner, subs: parseOr<Record<string, 0 | 1>>(subs, {}), qos2: parseOr<number[]>(q2, []), drops: Number(drops) || 0 };
}

/**
 * Persistent MQTT sessions in Redis. Per session: a record hash and a queue list; per org: an
 * index sorted by expiry deadline (bounds the org's session count and feeds inspection). Every key
 * carries a TTL. Commands fail fast while Redis is down (no offline queue). The three keys of a
 * session must be on one Redis server (the scripts name them together).
 */
export function createRedisSessionStore(url: string, log: Logger, opts: { maxExpiryMs: number }): SessionStore {
  const conn = createWatchedRedis(url, log, { what: 'MQTT sessions', autoPipelining: true });
  const { redis } = conn;
  // EVALSHA with a fallback to EVAL (ioredis scripts): the script text is sent once, not per call.
  redis.defineCommand('orghubSessionClaim', { numberOfKeys: 3, lua: CLAIM_LUA });
  redis.defineCommand('orghubSessionSubs', { numberOfKeys: 1, lua: SUBS_LUA });
  redis.defineCommand('orghubSessionPark', { numberOfKeys: 3, lua: PARK_LUA });
  redis.defineCommand('orghubSessionAppend', { numberOfKeys: 2, lua: APPEND_LUA });
  redis.defineCommand('orghubSessionAdopt', { numberOfKeys: 3, lua: ADOPT_LUA });
  const scripts = redis as unknown as Record<'orghubSessionClaimBuffer' | 'orghubSessionSubs' | 'orghubSessionPark' | 'orghubSessionAppend' | 'orghubSessionAdopt', (...args: (string | Buffer)[]) => Promise<unknown>>;
  const member = (ref: SessionRef) => `${ref.org}\u0000${ref.key}`;
  /** The parked index outlives any session it names. */
  const indexTtlMs = String(opts.maxExpiryMs + LIVE_MARGIN_MS);
  const keys = (ref: SessionRef) => [sessionKey(ref), queueKey(ref), sessionIndexKey(ref.org)] as const;
  /** Nodes that retired through this store: no later park or beat marks them alive again. */
  const retired = new Set<string>();

  return {
    async peek(ref) {
      const [owner, subs, q2, drops] = await redis.hmget(sessionKey(ref), 'owner', 'subs', 'q2', 'drops');
      return owner === null ? undefined : parseSession(owner, subs ?? '', q2 ?? '', drops ?? '0');
    },
    async claim(ref, owner, o) {
      const r = (await scripts.orghubSessionClaimBuffer(...keys(ref), owner, o.clean ? '1' : '0', o.clientId, String(o.expiryMs), String(Date.now()), String(LIVE_MARGIN_MS), String(o.maxSessions), ref.key, String(opts.maxExpiryMs + LIVE_MARGIN_MS), o.unlessLive ? '1' : '0')) as [number, Buffer, Buffer, Buffer, Buffer];
      if (r[0] === -1) return 'full';
      if (r[0] === -2) return 'busy';
      return { present: r[0] === 1, session: parseSession(owner, r[1].toString(), r[2].toString(), r[3].toString()), messages: unpackEntries(r[4]) };
    },
    async discard(ref) {
      await redis.multi().del(sessionKey(ref), queueKey(ref)).zrem(sessionIndexKey(ref.org), ref.key).exec();
    },
    async setSubscriptions(ref, owner, subs) {
      await scripts.orghubSessionSubs(sessionKey(ref), owner, JSON.stringify(subs));
    },
    async park(ref, owner, next, s) {
      const r = await scripts.orghubSessionPark(...keys(ref), owner, next, JSON.stringify(s.subs), JSON.stringify(s.qos2), String(s.expiryMs), String(Date.now()), String(s.maxQueue), ref.key, ...s.pending);
      if (r === -1) return false;
      // Indexed for adoption; the park counts as a beat, so a node whose first heartbeat has not landed yet is not taken for dead.
      // Not once the node retired: the parks of a stopping node would keep it "alive" for
      // NODE_ALIVE_MS more and hold back the adoption of every session it parks on the way down.
      if (s.queueNode) {
        const m = redis.multi();
        if (!retired.has(s.queueNode)) m.set(aliveKey(s.queueNode), '1', 'PX', NODE_ALIVE_MS);
        await m.sadd(parkedKey(s.queueNode), member(ref)).pexpire(parkedKey(s.queueNode), indexTtlMs).sadd(NODES_KEY, s.queueNode).exec();
      }
      return true;
    },
    async heartbeat(node) {
      if (retired.has(node)) return; // a beat still in flight when the node retired
      await redis.set(aliveKey(node), '1', 'PX', NODE_ALIVE_MS);
    },
    async retire(node) {
      retired.add(node);
      await redis.del(aliveKey(node));
    },
    async adoptOrphans(node, newOwner, limit) {
      const out: Adopted[] = [];
      for (const other of await redis.smembers(NODES_KEY)) {
        if (other === node || (await redis.exists(aliveKey(other))) === 1) continue;
        const members = await redis.srandmember(parkedKey(other), limit);
        if (members.length === 0) {
          await redis.srem(NODES_KEY, other);
          continue;
        }
        for (const m of members) {
          const [org, key] = m.split('\u0000');
          if (!org || !key) {
            await redis.srem(parkedKey(other), m);
            continue;
          }
          const ref = { org, key };
          const owner = newOwner();
          const r = (await scripts.orghubSessionAdopt(sessionKey(ref), parkedKey(other), parkedKey(node), m, `queue:${other}:`, owner, indexTtlMs)) as [string, number] | null;
          if (r) out.push({ ref, owner, subs: parseSession(owner, r[0], '', '0').subs, expiryMs: r[1] });
          if (out.length >= limit) return out;
        }
        await redis.sadd(NODES_KEY, node);
      }
      return out;
    },
    async unpark(ref, node) {
      await redis.srem(parkedKey(node), member(ref));
    },
    async append(ref, owner, entries, maxQueue) {
      let last = { length: 0, dropped: 0 };
      for (let i = 0; i < entries.length; i += APPEND_CHUNK) {
        const r = (await scripts.orghubSessionAppend(sessionKey(ref), queueKey(ref), owner, String(maxQueue), ...entries.slice(i, i + APPEND_CHUNK))) as [number, number];
        if (r[0] === -1) return undefined;
        last = { length: r[0], dropped: last.dropped + r[1] };
      }
      return last;
    },
    async list(org, limit) {
      const idx = sessionIndexKey(org);
      await redis.zremrangebyscore(idx, '-inf', Date.now());
      const members = await redis.zrange(idx, '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, limit, 'WITHSCORES');
      const p = redis.pipeline();
      const refs: { ref: SessionRef; deadline: number }[] = [];
      for (let i = 0; i < members.length; i += 2) {
        const ref = { org, key: members[i] };
        refs.push({ ref, deadline: Number(members[i + 1]) });
        p.hmget(sessionKey(ref), 'owner', 'cid', 'drops', 'last', 'exp').llen(queueKey(ref));
      }
      const res = (await p.exec()) ?? [];
      const out: SessionInfo[] = [];
      refs.forEach(({ deadline }, j) => {
        const [owner, cid, drops, last] = (res[2 * j]?.[1] ?? []) as (string | null)[];
        if (owner === null || owner === undefined) return; // expired between the two reads
        out.push({ clientId: cid ?? '', connected: owner.startsWith('live:'), queued: Number(res[2 * j + 1]?.[1]) || 0, dropped: Number(drops) || 0, lastActivity: Number(last) || 0, expiresAt: deadline });
      });
      return out;
    },
    async ping() {
      try {
        return (await redis.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    close: conn.close,
  };
}
