import { ANY, type EventStore } from '../eventstore/eventStore.ts';
import { HubError } from '../errors.ts';
import { describeKey, PLATFORM_KEY_ORG, type ApiKeyRecord, type CreateApiKeyRequest } from './apiKey.ts';
import { apiKeySubject, type ApiKeys } from './apiKeys.ts';
import type { Revocations } from './revocations.ts';

/** Each org's access changes (revocations, API keys) are recorded in this stream; platform keys in `_platform`'s. */
export const ACCESS_STREAM = 'access';

/** Who changed access: the metadata of the recorded event. */
export interface AccessActor {
  actor: string;
  /** Request id (HTTP) or a run id (CLI). */
  session: string;
  node: string;
}

/** Appends one access event to `org`'s `access` stream; undefined without an event store. Never the secret or the hash. */
export async function recordAccessEvent(store: EventStore | undefined, org: string, type: string, data: Record<string, unknown>, by: AccessActor): Promise<string | undefined> {
  if (!store) return undefined;
  try {
    const res = await store.appendToStream(org, ACCESS_STREAM, [{ type, data, metadata: { actor: by.actor, session: by.session, node: by.node, correlationId: by.session } }], { expectedVersion: ANY });
    return res.ids[0];
  } catch (err) {
    if (err instanceof HubError) throw err;
    throw new HubError('unavailable', 'event store unavailable; nothing was changed', { cause: err });
  }
}

/**
 * Revokes `org`'s key `id` and adds the `jti` revocation of its principal (`apikey:<id>`), which
 * every node applies at once whatever its record cache holds. Undefined when `org` has no such key.
 */
export async function revokeKey(deps: { apiKeys: ApiKeys; revocations: Revocations; maxTtlSec: number }, org: string, id: string): Promise<{ record: ApiKeyRecord; announced: boolean } | undefined> {
  const record = await deps.apiKeys.revoke(org, id);
  if (!record) return undefined;
  const until = Date.now() + deps.maxTtlSec * 1000;
  const { announced } = await deps.revocations.revoke({ kind: 'jti', org, jti: apiKeySubject(id), until });
  return { record, announced };
}

/**
 * Platform API keys (docs/access.md "Platform API keys"): org API keys of the reserved org
 * `_platform` with the single role `platform`. Created, listed and revoked here for both the HTTP
 * API (`/v1/platform/apikeys`) and the operator's CLI (`npm run platform-key`), and recorded in
 * `_platform`'s `access` stream.
 */
export function createPlatformKeys(deps: { apiKeys: ApiKeys; revocations: Revocations; maxTtlSec: number; store?: EventStore }) {
  return {
    async create(req: CreateApiKeyRequest, by: AccessActor): Promise<{ key: string; apiKey: Record<string, unknown>; eventId?: string }> {
      const { key, record } = await deps.apiKeys.create(PLATFORM_KEY_ORG, by.actor, req);
      const apiKey = describeKey(record);
      const eventId = await recordAccessEvent(deps.store, PLATFORM_KEY_ORG, 'access.platform_key_created', apiKey, by);
      return { key, apiKey, eventId };
    },
    list: async (): Promise<Record<string, unknown>[]> => (await deps.apiKeys.list(PLATFORM_KEY_ORG)).map(describeKey),
    async revoke(id: string, by: AccessActor): Promise<{ apiKey: Record<string, unknown>; announced: boolean; eventId?: string } | undefined> {
      const done = await revokeKey(deps, PLATFORM_KEY_ORG, id);
      if (!done) return undefined;
      const apiKey = describeKey(done.record);
      const eventId = await recordAccessEvent(deps.store, PLATFORM_KEY_ORG, 'access.platform_key_revoked', { id, revokedAt: apiKey.revokedAt }, by);
      return { apiKey, announced: done.announced, eventId };
    },
  };
}
export type PlatformKeys = ReturnType<typeof createPlatformKeys>;
