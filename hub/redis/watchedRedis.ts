import { Redis } from 'ioredis';
import type { Logger } from '../log.ts';

export interface WatchedRedisOptions {
  /** What the connection serves, for the log lines: `Redis (<what>) unreachable; …`. */
  what: string;
  /** The end of the "unreachable" line: what the feature does meanwhile (default `retrying`). */
  meanwhile?: string;
  /** Default 1. */
  maxRetriesPerRequest?: number;
  /** Default 3000 ms. */
  commandTimeout?: number;
  /**
   * Commands issued in one event-loop turn leave in one write (ioredis auto-pipelining): for a
   * feature with bursts of small independent commands (MQTT sessions resuming by the hundred).
   */
  autoPipelining?: boolean;
}

/**
 * A Redis connection for a feature that must fail fast while Redis is down: no offline queue, a
 * bounded command time, reconnects forever with a capped back-off. An outage is logged once and the
 * recovery once; errors while closing (a bridge that found its port busy closes while still
 * connecting) are not an outage.
 */
export function createWatchedRedis(url: string, log: Logger, opts: WatchedRedisOptions): { redis: Redis; ping(): Promise<boolean>; close(): Promise<void> } {
  const redis = new Redis(url, {
    lazyConnect: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: opts.maxRetriesPerRequest ?? 1,
    commandTimeout: opts.commandTimeout ?? 3000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    enableAutoPipelining: opts.autoPipelining ?? false,
  });
  let warned = false;
  let closing = false;
  redis.on('error', (err) => {
    if (closing || warned) return;
    warned = true;
    log.warn({ err: err.message }, `Redis (${opts.what}) unreachable; ${opts.meanwhile ?? 'retrying'}`);
  });
  redis.on('ready', () => {
    if (warned) log.info(`Redis (${opts.what}) reachable again`);
    warned = false;
  });
  return {
    redis,
    async ping() {
      if (redis.status !== 'ready') return false;
      try {
        return (await redis.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    async close() {
      closing = true;
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
