import { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import { ORG_SCOPE, type JoinResult, type PresenceEntry, type PresenceList, type PresenceStore, type Reaped } from './presence.ts';

/**
 * Redis layout, under a prefix P (ORGHUB_PRESENCE_PREFIX):
 * - `P:e:<org>:<scope>`: hash session → entry JSON (at most `cap` fields: the listed entries);
 * - `P:c:<org>:<scope>`: hash node → connections of that node only counted (past the cap);
 * - `P:n:<node>`: set of `org\nscope\nsession\nflag` for everything the node holds (flag 1 = counted),
 *   so another node can remove them all when this one dies;
 * - `P:s:<node>`: hash session → `org\nentry JSON` of every connection of the node (its org-scope
 *   join, cap or not), so the node that reaps a dead one can record each session's end once;
 * - `P:alive:<node>`: present while the node heartbeats (PX = the TTL); `P:nodes`: every node seen.
 * Org ids contain no `:`, so `<org>:<scope>` is unambiguous. Scripts build keys from the prefix,
 * which suits one Redis (not Redis Cluster; docs/presence.md).
 */
const JOIN_LUA = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], ARGV[1], ARGV[6] .. '\\n' .. ARGV[2]) end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
  redis.call('SADD', KEYS[3], ARGV[5] .. '1')
  return 2
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[5] .. '0')
return 1`;

const LEAVE_LUA = `
if ARGV[5] == '1' then redis.call('HDEL', KEYS[4], ARGV[1]) end
if ARGV[3] == '1' then
  redis.call('SREM', KEYS[3], ARGV[4] .. '1')
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
  return 1
end
redis.call('SREM', KEYS[3], ARGV[4] .. '0')
return redis.call('HDEL', KEYS[1], ARGV[1])`;

/**
 * Removes everything of node ARGV[2] unless it is alive (KEYS[2]); returns {{org, scope, entry, ...},
 * {org\nentry, ...}}: the listed entries removed (for leave events) and the node's sessions.
 */
const REAP_LUA = `
if ARGV[3] == '0' and redis.call('EXISTS', KEYS[2]) == 1 then return {{}, {}} end
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local a = string.find(m, '\\n', 1, true)
  local b = string.find(m, '\\n', a + 1, true)
  local c = string.find(m, '\\n', b + 1, true)
  local org = string.sub(m, 1, a - 1)
  local scope = string.sub(m, a + 1, b - 1)
  local session = string.sub(m, b + 1, c - 1)
  local base = org .. ':' .. scope
  if string.sub(m, c + 1) == '1' then
    redis.call('HDEL', ARGV[1] .. 'c:' .. base, ARGV[2])
  else
    local key = ARGV[1] .. 'e:' .. base
    local v = redis.call('HGET', key, session)
    if v then
      redis.call('HDEL', key, session)
      out[#out + 1] = org
      out[#out + 1] = scope
      out[#out + 1] = v
    end
  end
end
local sessions = redis.call('HVALS', KEYS[4])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
redis.call('SREM', KEYS[3], ARGV[2])
return {out, sessions}`;

export interface RedisPresenceOptions {
  url: string;
  prefix: string;
  log: Logger;
}


export function createRedisPresence(opts: RedisPresenceOptions): PresenceStore {
  const P = opts.prefix;
  // Auto-pipelined, scripts by EVALSHA (ioredis falls back to EVAL once per script): a burst of
  // connects (reconnecting MQTT sessions by the hundred) sends its joins in one write, without the
  // script text.
  const redis = new Redis(opts.url, { lazyConnect: false, maxRetriesPerRequest: 2, enableOfflineQueue: true, enableAutoPipelining: true });
  redis.on('error', (err) => opts.log.debug({ err: err.message }, 'presence redis error'));
  redis.defineCommand('orghubPresenceJoin', { numberOfKeys: 4, lua: JOIN_LUA });
  redis.defineCommand('orghubPresenceLeave', { numberOfKeys: 4, lua: LEAVE_LUA });
  const scripts = redis as unknown as Record<'orghubPresenceJoin' | 'orghubPresenceLeave', (...args: (string | number)[]) => Promise<unknown>>;
  const e = (org: string, scope: string) => `${P}e:${org}:${scope}`;
  const c = (org: string, scope: string) => `${P}c:${org}:${scope}`;
  const n = (node: string) => `${P}n:${node}`;
  const alive = (node: string) => `${P}alive:${node}`;
  const sessions = (node: string) => `${P}s:${node}`;
  const nodes = `${P}nodes`;
  const member = (org: string, scope: string, session: string) => `${org}\n${scope}\n${session}\n`;

  const reapNode = async (node: string, force: boolean): Promise<Reaped> => {
    const [flat, held] = (await redis.eval(REAP_LUA, 4, n(node), alive(node), nodes, sessions(node), P, node, force ? '1' : '0')) as [string[], string[]];
    const out: Reaped = { leaves: [], sessions: [] };
    for (let i = 0; i + 2 < flat.length; i += 3) out.leaves.push({ org: flat[i], scope: flat[i + 1], entry: JSON.parse(flat[i + 2]) as PresenceEntry });
    for (const v of held) {
      const cut = v.indexOf('\n');
      out.sessions.push({ org: v.slice(0, cut), entry: JSON.parse(v.slice(cut + 1)) as PresenceEntry });
    }
    return out;
  };

  return {
    async join(org, scope, entry, cap): Promise<JoinResult> {
      const r = await scripts.orghubPresenceJoin(e(org, scope), c(org, scope), n(entry.node), sessions(entry.node), entry.session, JSON.stringify(entry), cap, entry.node, member(org, scope, entry.session), scope === ORG_SCOPE ? org : '');
      return r === 1 ? 'listed' : r === 2 ? 'counted' : 'present';
    },
    async leave(org, scope, session, node, counted) {
      return (await scripts.orghubPresenceLeave(e(org, scope), c(org, scope), n(node), sessions(node), session, node, counted ? '1' : '0', member(org, scope, session), scope === ORG_SCOPE ? '1' : '0')) === 1;
    },
    async list(org, scope): Promise<PresenceList> {
      const [all, counts] = await Promise.all([redis.hvals(e(org, scope)), redis.hvals(c(org, scope))]);
      const entries = all.map((v) => JSON.parse(v) as PresenceEntry).sort((a, b) => a.since - b.since || (a.session < b.session ? -1 : 1));
      const overflow = counts.reduce((s, v) => s + Math.max(0, Number(v) || 0), 0);
      return { entries, connections: entries.length + overflow, users: new Set(entries.map((x) => x.sub)).size, truncated: overflow > 0 };
    },
    async heartbeat(node, ttlMs) {
      await redis.multi().set(alive(node), '1', 'PX', ttlMs).sadd(nodes, node).exec();
    },
    async reap(self) {
      const out: Reaped = { leaves: [], sessions: [] };
      for (const node of await redis.smembers(nodes)) {
        if (node === self) continue;
        const r = await reapNode(node, false);
        out.leaves.push(...r.leaves);
        out.sessions.push(...r.sessions);
      }
      return out;
    },
    retire: (node) => reapNode(node, true),
    async ping() {
      return (await redis.ping()) === 'PONG';
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
