import { fileURLToPath } from 'node:url';
import path from 'node:path';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { rolesSql, readModelRolesSql, DEFAULT_APP_ROLE, DEFAULT_PROJECTOR_ROLE, DEFAULT_QUERY_ROLE, DEFAULT_PROJECTION_WRITER_ROLE } from './roles.ts';

/** Versioned migrations live in `migrations/` at the repository root (node-pg-migrate files). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));
const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/orghub';

export interface MigrateOptions {
  databaseUrl?: string;
  appRole?: string;
  projectorRole?: string;
  /** Silences node-pg-migrate's progress lines (tests). */
  quiet?: boolean;
}

/**
 * Applies every pending migration, then re-asserts the roles and grants (idempotent, so a changed
 * ORGHUB_DATABASE_APP_ROLE takes effect without a new migration). Safe to run concurrently: the
 * runner's advisory lock makes a second caller wait, then find nothing to do.
 */
export async function migrate(opts: MigrateOptions = {}): Promise<string[]> {
  const databaseUrl = opts.databaseUrl ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  const appRole = opts.appRole ?? (process.env.ORGHUB_DATABASE_APP_ROLE || DEFAULT_APP_ROLE);
  const projectorRole = opts.projectorRole ?? (process.env.ORGHUB_DATABASE_PROJECTOR_ROLE || DEFAULT_PROJECTOR_ROLE);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const noop = () => {};
    const ran = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      migrationsTable: 'pgmigrations',
      direction: 'up',
      count: Infinity,
      singleTransaction: true,
      checkOrder: true,
      advisoryLockMode: 'wait',
      ...(opts.quiet ? { logger: { debug: noop, info: noop, warn: console.warn, error: console.error } } : {}),
    });
    // Roles are cluster-wide, but an advisory lock is per database: migrators of other databases
    // (parallel test files, one database each) run the role SQL at the same time. It writes to the
    // catalog only when something is missing; two creations of one missing role still collide, and
    // the loser finds the role on its next attempt.
    await client.query('SELECT pg_advisory_lock(7241865325823965)');
    try {
      await retryCatalogRace(() => client.query(rolesSql(appRole, projectorRole)));
      await retryCatalogRace(() =>
        client.query(readModelRolesSql(process.env.ORGHUB_DATABASE_QUERY_ROLE || DEFAULT_QUERY_ROLE, process.env.ORGHUB_DATABASE_PROJECTION_WRITER_ROLE || DEFAULT_PROJECTION_WRITER_ROLE)),
      );
    } finally {
      await client.query('SELECT pg_advisory_unlock(7241865325823965)');
    }
    return ran.map((m) => m.name);
  } finally {
    await client.end();
  }
}

/** SQLSTATEs of two sessions writing one catalog row at once: unique_violation (two CREATE ROLE),
 * duplicate_object, and XX000 'tuple concurrently updated' (two ALTER/GRANT of one role). */
const CATALOG_RACE = new Set(['23505', '42710', 'XX000']);

/** Runs `fn` again (up to 5 times, short random pauses) while it fails on a catalog race. */
export async function retryCatalogRace<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      const race = CATALOG_RACE.has(code) && (code !== 'XX000' || /concurrently/.test((err as Error).message));
      if (!race || attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 10 + Math.random() * 40 * attempt));
    }
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  migrate()
    .then((ran) => {
      console.log(ran.length ? `applied: ${ran.join(', ')}` : 'database is up to date');
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
}
