/**
 * The limits boundary: cluster-wide token buckets and connection slots. Adapters:
 * `memoryLimiter.ts` (one node; also the fallback while Redis is down) and `redisLimiter.ts`
 * (shared by every node, Lua scripts). Both pass `conformance.ts`.
 *
 * Nothing here is called per message: `leases.ts` takes tokens in chunks (leases) and serves the
 * message path from local memory, and connection slots are taken once per connection.
 */

/** A bucket's shape: `rate` tokens per second, holding at most `burst`. */
export interface BucketSpec {
  rate: number;
  burst: number;
}

/** The answer to a lease request. */
export interface Grant {
  /** Tokens granted (0..want). */
  granted: number;
  /** When nothing was granted: ms until `minGrant` tokens will be there; 0 otherwise. */
  retryAfterMs: number;
}

/** A connection slot wanted: set `key`, holding at most `max` (≤ 0: no cap). */
export interface SlotWant {
  key: string;
  max: number;
}

export interface Limiter {
  /**
   * Takes up to `want` tokens from bucket `key`, but only if at least `minGrant` are there (so a
   * flood asks once per `minGrant` tokens, not once per token). A new bucket starts full.
   */
  take(key: string, want: number, minGrant: number, spec: BucketSpec): Promise<Grant>;
  /**
   * Adds one holder from node `node` to slot set `key` unless the set already holds `max` from
   * live nodes; true when added. A node's holders count while its heartbeat is fresh.
   */
  acquire(key: string, node: string, max: number): Promise<boolean>;
  /**
   * `acquire` for several distinct keys in one step (one round trip on Redis): adds one holder from
   * `node` to every set if none of them already holds its `max` from live nodes (a `max` ≤ 0 is no
   * cap), else to none. Returns -1 when all were taken, else the index of the first set at its cap.
   */
  acquireAll(slots: readonly SlotWant[], node: string): Promise<number>;
  /** Removes one holder of `node` from `key` (never below 0). */
  release(key: string, node: string): Promise<void>;
  /**
   * Marks `node` alive for `ttlMs` and re-asserts the counts it holds (so a restarted Redis, or a
   * set that lost the node, learns them again). Keys not listed keep their count.
   */
  heartbeat(node: string, held: ReadonlyMap<string, number>, ttlMs: number): Promise<void>;
  /** Holders of `key` across live nodes. */
  count(key: string): Promise<number>;
  /** Resolves once the store is first reachable (never, while it is down); absent when always ready. */
  ready?(): Promise<void>;
  /** Whether the backing store answers now. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** Keys: one namespace per kind, so a bucket and a slot set never share a key. */
export const bucketKey = (prefix: string, kind: 'pub' | 'cmd', level: 'user' | 'org', org: string, sub?: string): string =>
  level === 'org' ? `${prefix}b:${kind}:o:${org}` : `${prefix}b:${kind}:u:${org}:${sub}`;

export const slotKey = (prefix: string, level: 'ip' | 'org' | 'user', id: string, sub?: string): string =>
  level === 'user' ? `${prefix}c:u:${id}:${sub}` : `${prefix}c:${level === 'ip' ? 'i' : 'o'}:${id}`;
