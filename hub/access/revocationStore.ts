import type { RevocationRule } from './revocation.ts';

/** A per-org bound was reached: the request is refused with `limit`, nothing was stored. */
export const ORG_FULL = 'org_full' as const;

/**
 * Where revocations outlive a node: every node loads all of them at start and after a reconnect,
 * and the API writes each one here before announcing it. Adapters: `redisRevocationStore.ts`.
 * A rule is kept until its `until`, then forgotten by the store itself.
 */
export interface RevocationStore {
  /** Stores or strengthens `r`. Resolves ORG_FULL when the org holds `maxPerOrg` live rules already. Rejects while the store is down. */
  add(r: RevocationRule, maxPerOrg: number): Promise<'ok' | typeof ORG_FULL>;
  /** Every rule still in force, across orgs. */
  loadAll(): Promise<RevocationRule[]>;
  /** True while the store can be read and written; the hub refuses new tokens otherwise (fail closed). */
  readonly up: boolean;
  /** Called whenever the store comes (back) up, so that the in-memory copy is reloaded. */
  onUp(listener: () => void): void;
  close(): Promise<void>;
}
