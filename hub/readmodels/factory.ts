import type { Config } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { DEFAULT_CURSOR_KEY } from './cursor.ts';
import { createPostgresReadModels } from './postgresReadModels.ts';
import type { ReadModels } from './readModels.ts';

/**
 * The configured read models. They live in Postgres whichever event store is used (the projector
 * writes them there); `ORGHUB_EVENT_STORE=none` means no Postgres at all, so none.
 */
export function createReadModels(config: Config, log: Logger): ReadModels | undefined {
  if (config.ORGHUB_EVENT_STORE === 'none') return undefined;
  return createPostgresReadModels({
    databaseUrl: config.DATABASE_URL,
    queryRole: config.ORGHUB_DATABASE_QUERY_ROLE,
    poolSize: config.ORGHUB_QUERY_POOL_SIZE,
    statementTimeoutMs: config.ORGHUB_QUERY_STATEMENT_TIMEOUT_MS,
    // The database's text goes to the log only, never to the client.
    onError: (err, what) => log.warn({ err: (err as Error)?.message ?? String(err), what }, 'read-model query failed'),
  });
}

/** The cursor HMAC key: the configured one, or the built-in default (docs/query-api.md). */
export function cursorKey(config: Config): string {
  return config.ORGHUB_QUERY_CURSOR_KEY || DEFAULT_CURSOR_KEY;
}
