import type { Config } from '../config/config.ts';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { EventStore } from './eventStore.ts';
import { createPostgresEventStore } from './postgresEventStore.ts';

/** Builds the configured event store adapter; `none` returns undefined (commands disabled). */
export async function createEventStore(config: Config, log: Logger): Promise<EventStore | undefined> {
  switch (config.ORGHUB_EVENT_STORE) {
    case 'none':
      log.warn('ORGHUB_EVENT_STORE=none: commands are disabled and audit events are only logged');
      return undefined;
    case 'eventstoredb': {
      if (!config.EVENTSTORE_URL) throw new ConfigError('EVENTSTORE_URL must be set when ORGHUB_EVENT_STORE=eventstoredb');
      const { createEsdbEventStore } = await import('./esdbEventStore.ts');
      return createEsdbEventStore({ connectionString: config.EVENTSTORE_URL });
    }
    default:
      return createPostgresEventStore({
        databaseUrl: config.DATABASE_URL,
        appRole: config.ORGHUB_DATABASE_APP_ROLE,
        groupCommitMs: config.ORGHUB_GROUP_COMMIT_MS,
        groupCommitMax: config.ORGHUB_GROUP_COMMIT_MAX,
        groupCommitQueue: config.ORGHUB_GROUP_COMMIT_QUEUE,
        groupCommitQueuePerOrg: config.ORGHUB_GROUP_COMMIT_QUEUE_PER_ORG,
        groupCommitSlotsPerOrg: config.ORGHUB_GROUP_COMMIT_SLOTS_PER_ORG,
        groupCommitAckSlice: config.ORGHUB_GROUP_COMMIT_ACK_SLICE,
        groupCommitOrgWindow: config.ORGHUB_GROUP_COMMIT_ORG_WINDOW,
        groupCommitActiveMs: config.ORGHUB_GROUP_COMMIT_ACTIVE_MS,
        onError: (err) => log.warn({ err: (err as Error)?.message ?? String(err) }, 'event store background error'),
      });
  }
}
