import type { Redis } from 'ioredis';
import { apiKeyKey } from './redisApiKeyStore.ts';
import { REVOCATION_ORGS_KEY } from './redisRevocationStore.ts';
import { globEscape, orgRedisKeys, type OrgDataKind, type RedisLayout } from './orgRedisKeys.ts';

/** Keys erased per kind. */
export type ErasedCounts = Record<OrgDataKind, number>;

/**
 * Erases one org's data from Redis (offboarding; docs/access.md "Offboarding"), without blocking
 * Redis: one SCAN pass over `*:<org>:*` in steps of `batch` keys, each match checked against the
 * org's exact key prefixes (a topic of another org that happens to contain `:<org>:` is not one),
 * and UNLINK (memory reclaimed off Redis's main thread) in batches. API key records are found
 * through the org's id set and deleted only when the record names the org. Returns the counts.
 */
export async function eraseOrgRedisData(redis: Redis, org: string, layout: RedisLayout, batch = 500): Promise<ErasedCounts> {
  const { exact, prefixes, apiKeySet } = orgRedisKeys(org, layout);
  const counts: ErasedCounts = { retained: 0, mqttSessions: 0, history: 0, presence: 0, apiKeys: 0, revocations: 0, limits: 0, fleet: 0 };
  const unlink = async (keys: [string, OrgDataKind][]) => {
    for (let i = 0; i < keys.length; i += batch) {
      const chunk = keys.slice(i, i + batch);
      // UNLINK answers one total; count per key so the report names the kinds.
      const res = await chunk.reduce((m, [k]) => m.unlink(k), redis.multi()).exec();
      chunk.forEach(([, kind], j) => (counts[kind] += Number(res?.[j]?.[1] ?? 0)));
    }
  };

  // API key records first (the id set is among the exact keys).
  const ids = await redis.smembers(apiKeySet);
  for (let i = 0; i < ids.length; i += batch) {
    const chunk = ids.slice(i, i + batch);
    const values = await redis.mget(chunk.map(apiKeyKey));
    const mine = chunk.filter((_, j) => {
      try {
        return (JSON.parse(values[j] ?? 'null') as { org?: unknown } | null)?.org === org;
      } catch {
        return false;
      }
    });
    await unlink(mine.map((id) => [apiKeyKey(id), 'apiKeys']));
  }
  await unlink(exact);
  await redis.srem(REVOCATION_ORGS_KEY, org);

  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `*:${globEscape(org)}:*`, 'COUNT', batch);
    cursor = next;
    const found: [string, OrgDataKind][] = [];
    for (const k of keys) {
      const hit = prefixes.find(([p]) => k.startsWith(p));
      if (hit) found.push([k, hit[1]]);
    }
    await unlink(found);
  } while (cursor !== '0');
  return counts;
}
