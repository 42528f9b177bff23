import type { TokenVerifier } from '../auth/principal.ts';
import type { Bus } from '../bus/bus.ts';
import type { Config } from '../config/config.ts';
import { SessionRegistry } from '../core/sessions.ts';
import type { Logger } from '../log.ts';
import { createRedisRevocationStore } from './redisRevocationStore.ts';
import { createRevocations, withRevocationCheck, type Revocations } from './revocations.ts';
import type { RevocationStore } from './revocationStore.ts';

/** Public on purpose: development nodes agree on it without setup; production must set its own (config refuses to start otherwise). */
export const DEV_CLUSTER_SECRET = 'orghub-development-cluster-secret-not-for-production';

export function clusterSecret(config: Config): string {
  return config.ORGHUB_CLUSTER_SECRET || DEV_CLUSTER_SECRET;
}

/** The access-control parts of one node, built once by `startHub`. */
export interface Access {
  sessions: SessionRegistry;
  revocations: Revocations;
  /** The verifier every transport uses: the given one plus the revocation check. */
  verifier: TokenVerifier;
  /** For /ready: new tokens are refused while this is down (fail closed). */
  ready(): boolean;
  stop(): Promise<void>;
}

export function createAccess(deps: { config: Config; bus: Bus; log: Logger; verifier: TokenVerifier; revocationStore?: RevocationStore }): Access {
  const { config, bus, log } = deps;
  const store = deps.revocationStore ?? createRedisRevocationStore(config.REDIS_URL, log);
  const sessions = new SessionRegistry();
  const revocations = createRevocations({ store, bus, sessions, log, maxPerOrg: config.ORGHUB_REVOCATIONS_MAX });
  let loaded = false;
  void revocations.ready.then(() => (loaded = true));
  return {
    sessions,
    revocations,
    verifier: withRevocationCheck(deps.verifier, revocations),
    ready: () => loaded && store.up,
    async stop() {
      revocations.close();
      await store.close();
    },
  };
}
