import type { Principal, TokenVerifier } from './principal.ts';

export interface CacheOptions {
  /** Most tokens remembered; the oldest entry is evicted first. */
  max: number;
  /** A cached result is re-verified after this long, so a key removed from the JWKS stops working within it. */
  ttlMs: number;
}

/**
 * Remembers successful verifications by the exact token string. An HTTP backend sends the same
 * token with every request, and devices reconnecting after a restart resend theirs: signature
 * checks (~0.1-0.2 ms of CPU each for ES256 here) are the largest cost of both. Failures are never
 * cached, and a hit past the token's `exp` is a miss.
 */
export function createCachingVerifier(inner: TokenVerifier, opts: CacheOptions): TokenVerifier {
  const cache = new Map<string, { principal: Principal; until: number }>();
  return {
    async verify(token: string): Promise<Principal> {
      const now = Date.now();
      const hit = cache.get(token);
      if (hit) {
        if (hit.until > now && hit.principal.exp * 1000 > now) return hit.principal;
        cache.delete(token);
      }
      const principal = await inner.verify(token);
      if (cache.size >= opts.max) cache.delete(cache.keys().next().value as string);
      cache.set(token, { principal, until: now + opts.ttlMs });
      return principal;
    },
    close() {
      cache.clear();
      inner.close?.();
    },
  };
}
