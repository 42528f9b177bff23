import { orgApiKeysKey } from './redisApiKeyStore.ts';
import { revocationKey } from './redisRevocationStore.ts';
import { retainedBytesKey, retainedIndexKey, retainedKey } from '../mqtt/retainedRedis.ts';
import { queueKey, sessionIndexKey, sessionKey } from '../mqtt/sessionStoreRedis.ts';
import { bucketKey, slotKey } from '../limits/limiter.ts';

/** Where the configurable stores put their keys (ORGHUB_HISTORY_PREFIX, ORGHUB_PRESENCE_PREFIX, ORGHUB_LIMITS_PREFIX, ORGHUB_FLEET_REDIS_PREFIX). */
export interface RedisLayout {
  historyPrefix: string;
  presencePrefix: string;
  limitsPrefix: string;
  fleetPrefix: string;
}

/** The kinds of an org's Redis data, as offboarding reports what it erased. */
export type OrgDataKind = 'retained' | 'mqttSessions' | 'history' | 'presence' | 'apiKeys' | 'revocations' | 'limits' | 'fleet';

/**
 * Every Redis key that holds one org's data, by the names each store gives them: `exact` keys, and
 * `prefixes` (every key that starts with one belongs to the org; each ends with `:`, and org ids
 * hold no `:`, so org `acme` never reaches `acme-2`'s keys). API key records (`orghub:apikey:<id>`)
 * are found through the org's id set, `apiKeySet`. Rate-limit buckets and connection slot sets
 * would expire on their own, but name the org's users, so they go too. Not listed: the org
 * directory record, kept as the tombstone.
 */
export function orgRedisKeys(org: string, layout: RedisLayout): { exact: [string, OrgDataKind][]; prefixes: [string, OrgDataKind][]; apiKeySet: string } {
  const H = layout.historyPrefix;
  const P = layout.presencePrefix;
  const L = layout.limitsPrefix;
  const F = layout.fleetPrefix;
  return {
    exact: [
      [retainedKey(org), 'retained'],
      [retainedIndexKey(org), 'retained'],
      [retainedBytesKey(org), 'retained'],
      [sessionIndexKey(org), 'mqttSessions'],
      [orgApiKeysKey(org), 'apiKeys'],
      [revocationKey(org), 'revocations'],
      [bucketKey(L, 'pub', 'org', org), 'limits'],
      [bucketKey(L, 'cmd', 'org', org), 'limits'],
      [slotKey(L, 'org', org), 'limits'],
      // the org's set of live history topics (ORGHUB_HISTORY_MAX_TOPICS) and of open fleet commands (ORGHUB_FLEET_MAX_OPEN)
      [`${H}t:${org}`, 'history'],
      [`${F}open:${org}`, 'fleet'],
    ],
    prefixes: [
      // the store's own key functions with an empty session key: `…:<org>:`
      [sessionKey({ org, key: '' }), 'mqttSessions'],
      [queueKey({ org, key: '' }), 'mqttSessions'],
      [`${H}s:${org}:`, 'history'],
      [`${H}m:${org}:`, 'history'],
      [`${P}e:${org}:`, 'presence'],
      [`${P}c:${org}:`, 'presence'],
      // the limiter's key functions with an empty user: `…:<org>:`
      [bucketKey(L, 'pub', 'user', org, ''), 'limits'],
      [bucketKey(L, 'cmd', 'user', org, ''), 'limits'],
      [slotKey(L, 'user', org, ''), 'limits'],
    ],
    apiKeySet: orgApiKeysKey(org),
  };
}

/** Escapes Redis glob characters, so an id is matched literally by SCAN MATCH. */
export function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}
