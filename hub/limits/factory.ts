import type { Config } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { LimitService } from './limitService.ts';
import { createMemoryLimiter } from './memoryLimiter.ts';
import { createRedisLimiter } from './redisLimiter.ts';
import { createPgOrgTierSource } from './orgTiers.ts';
import { createDirectoryTierSource, type DirectoryOrg } from './directoryTiers.ts';
import { parseOrgOverrides, parseTierOverrides, TierTable, type Tier } from './tiers.ts';

/**
 * Builds the node's LimitService from the config: Redis (REDIS_URL) as the cluster store when
 * limits are on, an in-memory one when they are off (nothing is then asked of it).
 */
export function createLimitService(config: Config, log: Logger, nodeId: string, directory?: { get(org: string): Promise<DirectoryOrg | undefined> }): LimitService {
  const enabled = config.ORGHUB_LIMITS === 'on';
  const tiers = new TierTable(config.ORGHUB_LIMITS_TIER as Tier, parseTierOverrides(config.ORGHUB_LIMITS_TIERS), parseOrgOverrides(config.ORGHUB_LIMITS_ORGS));
  return new LimitService({
    enabled,
    tiers,
    cluster: enabled ? createRedisLimiter(config.REDIS_URL, log, config.ORGHUB_LIMITS_PREFIX) : createMemoryLimiter(),
    nodeId,
    prefix: config.ORGHUB_LIMITS_PREFIX,
    perIp: config.ORGHUB_LIMITS_PER_IP,
    abuseDenials: config.ORGHUB_LIMITS_ABUSE,
    leaseMs: config.ORGHUB_LIMITS_LEASE_MS,
    // Tiers from the orgs read model (Postgres deployments); the config's overrides win.
    orgSource: enabled && config.ORGHUB_EVENT_STORE === 'postgres' ? createPgOrgTierSource(config.DATABASE_URL, log) : undefined,
    // Tiers and `limits` set through the platform API (hub/http/orgApi.ts); they win over the config.
    directorySource: enabled && directory ? createDirectoryTierSource((org) => directory.get(org), log) : undefined,
    log,
  });
}
