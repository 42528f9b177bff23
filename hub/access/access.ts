import type { TokenVerifier } from '../auth/principal.ts';
import type { Bus } from '../bus/bus.ts';
import type { Config } from '../config/config.ts';
import { SessionRegistry } from '../core/sessions.ts';
import type { Logger } from '../log.ts';
import { createRedisRevocationStore } from './redisRevocationStore.ts';
import { createRevocations, withRevocationCheck, type Revocations } from './revocations.ts';
import type { RevocationStore } from './revocationStore.ts';
import { createApiKeys, withApiKeys, type ApiKeys } from './apiKeys.ts';
import { createRedisApiKeyStore } from './redisApiKeyStore.ts';
import type { ApiKeyStore } from './apiKeyStore.ts';
import { createOrgDirectory, withOrgCheck, type OrgDirectory } from './orgDirectory.ts';
import { createRedisOrgStore, type OrgStore } from './orgStore.ts';
import { createWatchedRedis } from '../redis/watchedRedis.ts';
import { eraseOrgRedisData, type ErasedCounts } from './redisOrgEraser.ts';

/** Public on purpose, like DEV_CLUSTER_SECRET: production sets ORGHUB_APIKEY_PEPPER (config refuses to start otherwise). */
export const DEV_APIKEY_PEPPER = 'orghub-development-api-key-pepper-not-for-production';

/** Public on purpose: development nodes agree on it without setup; production must set its own (config refuses to start otherwise). */
export const DEV_CLUSTER_SECRET = 'orghub-development-cluster-secret-not-for-production';

export function clusterSecret(config: Config): string {
  return config.ORGHUB_CLUSTER_SECRET || DEV_CLUSTER_SECRET;
}

/** The access-control parts of one node, built once by `startHub`. */
export interface Access {
  sessions: SessionRegistry;
  revocations: Revocations;
  apiKeys: ApiKeys;
  orgs: OrgDirectory;
  orgStore: OrgStore;
  /** The verifier every transport uses: org API keys (`ohk_…`; platform keys refused) or the given JWT verifier, then the revocation and org checks. */
  verifier: TokenVerifier;
  /** The same, but platform API keys are accepted too: for the org lifecycle routes (`/v1/orgs…`) only. */
  platformVerifier: TokenVerifier;
  /** Offboarding: erases the org's retained messages, MQTT sessions, history, presence, API keys, revocations and rate-limit keys from Redis (docs/access.md). */
  eraseOrgData(org: string): Promise<ErasedCounts>;
  /** For /ready: new tokens are refused while this is down (fail closed). */
  ready(): boolean;
  stop(): Promise<void>;
}

export function createAccess(deps: { config: Config; bus: Bus; log: Logger; verifier: TokenVerifier; revocationStore?: RevocationStore; apiKeyStore?: ApiKeyStore }): Access {
  const { config, bus, log } = deps;
  const store = deps.revocationStore ?? createRedisRevocationStore(config.REDIS_URL, log);
  const sessions = new SessionRegistry();
  const revocations = createRevocations({ store, bus, sessions, log, maxPerOrg: config.ORGHUB_REVOCATIONS_MAX });
  const keyStore = deps.apiKeyStore ?? createRedisApiKeyStore(config.REDIS_URL);
  const orgStore = createRedisOrgStore(config.REDIS_URL);
  const orgs = createOrgDirectory({ store: orgStore, bus, sessions, log, provisioning: config.ORGHUB_ORG_PROVISIONING as 'auto' | 'explicit' });
  const apiKeys = createApiKeys({ store: keyStore, pepper: config.ORGHUB_APIKEY_PEPPER || DEV_APIKEY_PEPPER, maxPerOrg: config.ORGHUB_APIKEYS_MAX, log });
  let loaded = false;
  void revocations.ready.then(() => (loaded = true));
  // Opened on the first offboarding only: most nodes never erase an org.
  let eraser: ReturnType<typeof createWatchedRedis> | undefined;
  const layout = { historyPrefix: config.ORGHUB_HISTORY_PREFIX, presencePrefix: config.ORGHUB_PRESENCE_PREFIX, limitsPrefix: config.ORGHUB_LIMITS_PREFIX, fleetPrefix: config.ORGHUB_FLEET_REDIS_PREFIX };
  return {
    sessions,
    revocations,
    apiKeys,
    orgs,
    orgStore,
    verifier: withOrgCheck(withRevocationCheck(withApiKeys(deps.verifier, apiKeys, 'org'), revocations), orgs),
    platformVerifier: withOrgCheck(withRevocationCheck(withApiKeys(deps.verifier, apiKeys, 'platform'), revocations), orgs),
    async eraseOrgData(org) {
      eraser ??= createWatchedRedis(config.REDIS_URL, log, { what: 'offboarding', meanwhile: 'an offboarding now cannot erase Redis data; run it again later', commandTimeout: 10_000 });
      const r = eraser.redis;
      if (r.status !== 'ready') {
        // A fresh connection (no offline queue): wait for it, briefly.
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 5000);
          r.once('ready', () => (clearTimeout(t), resolve()));
        });
      }
      return eraseOrgRedisData(eraser.redis, org, layout);
    },
    ready: () => loaded && store.up,
    async stop() {
      await eraser?.close();
      revocations.close();
      orgs.close();
      await orgStore.close();
      await store.close();
      await keyStore.close();
    },
  };
}
