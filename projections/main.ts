import pg from 'pg';
import { loadProjectorConfig } from '../hub/config/config.ts';
import { ConfigError } from '../hub/errors.ts';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import { DEFAULT_PROJECTION_WRITER_ROLE, assertRoleName } from '../hub/eventstore/roles.ts';
import { createLogger } from '../hub/log.ts';
import { selectProjections } from './registry.ts';
import { sweepRetention } from './retention.ts';
import { startProjectionRunner } from './runner.ts';
import { createSharedReader } from './sharedReader.ts';
import { createPgEventReader } from './pgEventReader.ts';

/**
 * The projector process (`npm run projector`; `npm start` runs it beside the hub). Every selected
 * projection gets its own runner: active where it wins the projection's advisory lock, standby
 * elsewhere. It also sweeps audit retention. Status goes to the log; the hub reports lag and dead
 * letters from Postgres (`projections/status.ts`).
 */
async function main() {
  let config;
  let projections;
  try {
    config = loadProjectorConfig();
    projections = selectProjections(config.ORGHUB_PROJECTOR_PROJECTIONS);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof Error) {
      process.stderr.write(`orghub projector: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.ORGHUB_LOG_LEVEL).child({ proc: 'projector' });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  const writerRole = assertRoleName(process.env.ORGHUB_DATABASE_PROJECTION_WRITER_ROLE || DEFAULT_PROJECTION_WRITER_ROLE);
  const databaseUrl = config.DATABASE_URL;
  const store = createPostgresEventStore({ databaseUrl, poolSize: projections.length + 1, queryTimeoutMs: 60_000, onError: (err) => log.warn({ err: (err as Error)?.message }, 'event store background error') });
  // One connection per projection, a second for those that write two batches at a time (runner.ts).
  const writers = projections.reduce((n, p) => n + (p.independentBatches ? 2 : 1), 0);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: writers + 1, application_name: `orghub-projector:${process.pid}:write`, keepAlive: true });
  pool.on('error', (err) => log.warn({ err: err.message }, 'projector pool connection lost'));

  const reader = createPgEventReader({ databaseUrl });
  const shared = createSharedReader(reader.read);
  const runners = projections.map((projection) =>
    startProjectionRunner({
      store, pool, databaseUrl, writerRole, projection, log, read: shared.reader(),
      batchSize: config.ORGHUB_PROJECTOR_BATCH,
      pollMs: config.ORGHUB_PROJECTOR_POLL_MS,
      lockPollMs: config.ORGHUB_PROJECTOR_LOCK_POLL_MS,
    }),
  );
  log.info({ projections: projections.map((p) => p.name), pid: process.pid }, 'projector started');

  let retentionTimer: NodeJS.Timeout | undefined;
  const sweep = async () => {
    const client = await pool.connect();
    try {
      const r = await sweepRetention(client, writerRole, config.ORGHUB_PROJECTOR_RETENTION_BATCH);
      if (r.droppedPartitions.length || r.trimmedRows) log.info(r, 'audit retention applied');
    } catch (err) {
      log.warn({ err: (err as Error)?.message }, 'audit retention sweep failed; retried next interval');
    } finally {
      client.release();
    }
  };
  if (config.ORGHUB_PROJECTOR_RETENTION_INTERVAL_S > 0) {
    retentionTimer = setInterval(() => void sweep(), config.ORGHUB_PROJECTOR_RETENTION_INTERVAL_S * 1000);
    setTimeout(() => void sweep(), 5000).unref();
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'projector shutting down');
    if (retentionTimer) clearInterval(retentionTimer);
    await Promise.all(runners.map((r) => r.stop()));
    await reader.close();
    await store.close().catch(() => {});
    await pool.end().catch(() => {});
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

void main();
