import type { Principal, TokenVerifier } from '../auth/principal.ts';
import { AuthError, HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { createKeyHasher, isApiKey, newApiKey, parseApiKey, PLATFORM_KEY_ORG, PLATFORM_ROLE, type ApiKeyRecord, type CreateApiKeyRequest } from './apiKey.ts';
import type { ApiKeyStore } from './apiKeyStore.ts';

/** The `sub` (and `jti`) an API key's principal carries: audit events name the key, never a user. */
export function apiKeySubject(id: string): string {
  return `apikey:${id}`;
}

export interface ApiKeys {
  create(org: string, actor: string, req: CreateApiKeyRequest): Promise<{ key: string; record: ApiKeyRecord }>;
  list(org: string): Promise<ApiKeyRecord[]>;
  /** Undefined when the org has no such key (another org's id included: 404 either way). */
  revoke(org: string, id: string): Promise<ApiKeyRecord | undefined>;
  /**
   * A principal for a valid, unexpired, unrevoked key; AuthError otherwise. `scope` `org` (every
   * route but the org lifecycle) refuses platform keys with `api_key_platform_only`; `platform`
   * (the org lifecycle routes) accepts both kinds, and the route's role check does the rest.
   */
  verify(token: string, scope?: KeyScope): Promise<Principal>;
  /** Drops a cached record (on this node's revoke and on other nodes' announcements). */
  forget(id: string): void;
}

/** Where a key is presented: an org-scoped route or transport, or the org lifecycle (platform) routes. */
export type KeyScope = 'org' | 'platform';

export interface ApiKeysOptions {
  store: ApiKeyStore;
  pepper: string;
  maxPerOrg: number;
  log: Logger;
  /** How long a verified record is reused before the store is asked again (ms). */
  cacheMs?: number;
}

/**
 * API key verification and lifecycle. Verification is a lookup by id (cached per node for
 * `cacheMs`, so a busy backend costs one HMAC per request and no Redis round trip) and a
 * constant-time HMAC comparison. Revocation is immediate on every node through the revocation
 * list (the key's principal carries `jti = apikey:<id>`), not through this cache.
 */
export function createApiKeys(opts: ApiKeysOptions): ApiKeys {
  const { store, maxPerOrg, log } = opts;
  const hasher = createKeyHasher(opts.pepper);
  const cacheMs = opts.cacheMs ?? 30_000;
  const cache = new Map<string, { rec: ApiKeyRecord; hash: Buffer; until: number }>();
  const touched = new Map<string, number>();

  const fetch = async (id: string, now: number): Promise<{ rec: ApiKeyRecord; hash: Buffer } | undefined> => {
    let rec: ApiKeyRecord | undefined;
    try {
      rec = await store.get(id);
    } catch (err) {
      throw new HubError('unavailable', 'api_keys_unavailable', { cause: err });
    }
    if (cache.size >= 10_000) cache.delete(cache.keys().next().value as string);
    if (!rec) {
      cache.delete(id);
      return undefined;
    }
    const entry = { rec, hash: Buffer.from(rec.hash, 'base64url'), until: now + cacheMs };
    cache.set(id, entry);
    return entry;
  };

  return {
    async create(org, actor, req) {
      const { id, secret, key } = newApiKey();
      const record: ApiKeyRecord = { id, org, name: req.name, roles: req.roles, acl: req.acl, hash: hasher.hash(id, secret), createdAt: Date.now(), createdBy: actor, expiresAt: req.expiresAt };
      let stored: boolean;
      try {
        stored = await store.create(record, maxPerOrg);
      } catch (err) {
        throw new HubError('unavailable', 'api key store unavailable; no key was created', { cause: err });
      }
      if (!stored) throw new HubError('limit', `at most ${maxPerOrg} API keys per org (ORGHUB_APIKEYS_MAX)`);
      return { key, record };
    },
    async list(org) {
      try {
        return await store.list(org);
      } catch (err) {
        throw new HubError('unavailable', 'api key store unavailable', { cause: err });
      }
    },
    async revoke(org, id) {
      let rec;
      try {
        rec = await store.revoke(org, id, Date.now());
      } catch (err) {
        throw new HubError('unavailable', 'api key store unavailable; nothing was revoked', { cause: err });
      }
      cache.delete(id);
      return rec;
    },
    async verify(token, scope = 'org') {
      const parsed = parseApiKey(token);
      if (!parsed) throw new AuthError('api_key_malformed');
      const now = Date.now();
      // A cache hit stays synchronous: no Redis, no extra promise on the hot path.
      const hit = cache.get(parsed.id);
      const entry = hit && hit.until > now ? hit : await fetch(parsed.id, now);
      // One answer for "no such id" and "wrong secret": ids are not secret, but nothing is confirmed.
      if (!entry || !hasher.matches(entry.rec, parsed.secret, entry.hash)) throw new AuthError('api_key_invalid');
      const rec = entry.rec;
      if (rec.revokedAt !== undefined) throw new AuthError('api_key_revoked');
      if (rec.expiresAt !== undefined && rec.expiresAt <= now) throw new AuthError('api_key_expired');
      const platformKey = rec.org === PLATFORM_KEY_ORG;
      // Refused before it is touched: outside the org lifecycle routes the key is no credential at all.
      if (platformKey && scope !== 'platform') throw new AuthError('api_key_platform_only');
      // last used: at most one write per key per node per minute
      if ((touched.get(rec.id) ?? 0) + 60_000 <= now) {
        touched.set(rec.id, now);
        if (touched.size > 10_000) touched.delete(touched.keys().next().value as string);
        store.touch(rec.id, now).catch((err: unknown) => log.debug({ err: (err as Error).message }, 'api key last-used not recorded'));
      }
      const sub = apiKeySubject(rec.id);
      const exp = Math.floor((rec.expiresAt ?? now + 365 * 24 * 3600_000) / 1000);
      // Only a platform key carries the platform role, whatever an org key's stored record says.
      const roles = platformKey ? [PLATFORM_ROLE] : rec.roles.includes(PLATFORM_ROLE) ? rec.roles.filter((r) => r !== PLATFORM_ROLE) : rec.roles;
      return { sub, org: rec.org, roles, acl: platformKey ? { pub: [], sub: [], cmd: [] } : rec.acl, jti: sub, exp };
    },
    forget(id) {
      cache.delete(id);
    },
  };
}

/** Routes `ohk_…` tokens to the API keys (in `scope`) and everything else to the JWT verifier. */
export function withApiKeys(jwt: TokenVerifier, keys: Pick<ApiKeys, 'verify'>, scope: KeyScope = 'org'): TokenVerifier {
  return {
    verify: (token) => (typeof token === 'string' && isApiKey(token) ? keys.verify(token, scope) : jwt.verify(token)),
    close: () => jwt.close?.(),
  };
}
