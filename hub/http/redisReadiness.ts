import { Redis } from 'ioredis';
import type { ReadinessCheck } from './opsApi.ts';

/**
 * `/ready`'s Redis check, on a connection of its own (a PING must not queue behind the limiter's or
 * the access stores' commands). Redis is shared by every node, so its outage is reported but never
 * takes one node out of rotation (`informational`): limits fail open, cached revocations and API
 * keys keep working (docs/operations.md).
 */
export function redisReadiness(url: string): { check: ReadinessCheck; close(): Promise<void> } {
  const redis = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 1000, retryStrategy: (n) => Math.min(n * 200, 2000) });
  redis.on('error', () => {}); // the check reports it; a log line per reconnect attempt would be noise
  redis.connect().catch(() => {});
  return {
    check: {
      name: 'redis',
      informational: true,
      check: async () => ({ up: (await redis.ping().catch(() => '')) === 'PONG' }),
    },
    async close() {
      redis.disconnect();
    },
  };
}
