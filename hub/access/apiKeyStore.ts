import type { ApiKeyRecord } from './apiKey.ts';

/**
 * Where API keys live. Adapter: `redisApiKeyStore.ts` (Redis, which must then run with AOF
 * persistence; every change is also recorded in the event store's `access` stream).
 */
export interface ApiKeyStore {
  /** Stores a new key unless the org already holds `maxPerOrg`; resolves false then. */
  create(rec: ApiKeyRecord, maxPerOrg: number): Promise<boolean>;
  /** The key with this id, whatever its org (the caller checks the org). */
  get(id: string): Promise<ApiKeyRecord | undefined>;
  /** The org's keys, revoked ones included until they are forgotten. */
  list(org: string): Promise<ApiKeyRecord[]>;
  /** Marks the org's key revoked; resolves undefined when the org has no such key. */
  revoke(org: string, id: string, at: number): Promise<ApiKeyRecord | undefined>;
  touch(id: string, at: number): Promise<void>;
  close(): Promise<void>;
}
