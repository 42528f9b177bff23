import { createHash } from 'node:crypto';
import type { Principal, TokenVerifier } from './principal.ts';

/**
 * The cache key: a SHA-256 of the whole token, not the token itself (a JWT is ~0.5 KB, and one per
 * connected device would be kept), and never a part of it (a valid signature reused with another
 * payload must not hit).
 */
function keyOf(token: string): string {
  return createHash('sha256').update(token).digest('base64');
}

export interface CacheOptions {
  /** Most tokens remembered; the oldest entry is evicted first. */
  max: number;
  /** A cached result is re-verified after this long, so a key removed from the JWKS stops working within it. */
  ttlMs: number;
}

/**
 * Remembers successful verifications by the exact token (its SHA-256). An HTTP backend sends the same
 * token with every request, and devices reconnecting after a restart resend theirs: signature
 * checks (~0.1-0.2 ms of CPU each for ES256 here) are the largest cost of both. Failures are never
 * cached, and a hit past the token's `exp` is a miss.
 */
export function createCachingVerifier(inner: TokenVerifier, opts: CacheOptions): TokenVerifier {
  const cache = new Map<string, { principal: Principal; until: number }>();
  return {
    async verify(token: string): Promise<Principal> {
      const now = Date.now();
      const key = keyOf(token);
      const hit = cache.get(key);
      if (hit) {
        if (hit.until > now && hit.principal.exp * 1000 > now) return hit.principal;
        cache.delete(key);
      }
      const principal = await inner.verify(token);
      if (cache.size >= opts.max) cache.delete(cache.keys().next().value as string);
      cache.set(key, { principal, until: now + opts.ttlMs });
      return principal;
    },
    close() {
      cache.clear();
      inner.close?.();
    },
  };
}
