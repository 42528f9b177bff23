import pg from 'pg';
import { performance } from 'node:perf_hooks';
import { START, formatPosition, type EventStore, type Position, type ReadAllBatch } from '../hub/eventstore/eventStore.ts';
import { DEFAULT_PROJECTOR_ROLE } from '../hub/eventstore/roles.ts';
import { applyBatch, type Target } from './apply.ts';
import type { Projection } from './projection.ts';
import type { BatchReader } from './sharedReader.ts';
import { SHADOW_SUFFIX, createShadowTable, shadowName, swapShadowTable } from './shadow.ts';
import { ident } from './sql.ts';

export interface RebuildOptions {
  databaseUrl: string;
  store: EventStore;
  projection: Projection;
  writerRole: string;
  batchSize: number;
  /** false: build the shadow tables and leave them (`<table>__rebuild`) without swapping (tests, dry runs). */
  swap?: boolean;
  /** Reads the log; default `store.readAll` (the CLI passes pgEventReader's faster read). */
  read?: BatchReader;
  /** Called after every batch with events done and the current head estimate. */
  onProgress?: (done: number, total: number) => void;
  /** true: start from position zero even where a previous rebuild left its checkpoint. */
  restart?: boolean;
}

export interface RebuildSummary {
  projection: string;
  version: number;
  events: number;
  deadLetters: number;
  seconds: number;
  eventsPerSecond: number;
  position: string;
  swapped: boolean;
  /** Events a previous, interrupted rebuild had already written into the shadow tables (0: this run started from zero). */
  resumedFrom: number;
}

const SWAP_LOCK_TIMEOUT = '10s';

/** Where an interrupted rebuild of `projection` stands, if it can be resumed: same version, every shadow table still there. */
async function resumable(c: pg.ClientBase, projection: Projection): Promise<{ position: Position; events: number; deadLetters: number } | undefined> {
  const { rows } = await c.query<{ version: number; tx: string; pos: string; events: string; dead: string }>(
    `SELECT version, position_tx::text AS tx, position::text AS pos, events_applied::text AS events, dead_letters::text AS dead FROM projection_rebuilds WHERE name = $1`,
    [projection.name],
  );
  const r = rows[0];
  if (!r || r.version !== projection.version) return undefined;
  for (const t of projection.tables) {
    if (!(await c.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [`public.${shadowName(t)}`])).rows[0].ok) return undefined;
  }
  return { position: { tx: BigInt(r.tx), pos: BigInt(r.pos) }, events: Number(r.events), deadLetters: Number(r.dead) };
}

/**
 * Blue/green rebuild of one projection (Marten's versioned projections): fresh shadow tables are
 * built from position zero while the canonical tables keep serving, then swapped in one
 * transaction that (1) locks the canonical tables (the live runner's next batch waits), (2)
 * applies the last events into the shadow, (3) drops the canonical tables and renames the shadow
 * tables, partitions and indexes into their place, (4) moves the projection's checkpoint to the
 * shadow's position. The live runner's blocked batch then fails its checkpoint compare-and-set,
 * rolls back and resumes from the new checkpoint, into the new tables.
 *
 * Each batch into the shadow tables commits with the rebuild's own checkpoint (`projection_rebuilds`,
 * compare-and-set on the previous position), so a rebuild that dies (killed, connection lost) is
 * resumed by the next run from there, unless `restart` is set, the projection's version changed or
 * a shadow table is gone; the swap deletes that checkpoint.
 */
export async function rebuildProjection(opts: RebuildOptions): Promise<RebuildSummary> {
  const { projection, store } = opts;
  const started = performance.now();
  const admin = new pg.Client({ connectionString: opts.databaseUrl, application_name: `orghub-projector:${process.pid}:rebuild:${projection.name}` });
  await admin.connect();
  const months = new Set<string>();
  const shadowTarget: Target = {
    table: (t) => (projection.tables.includes(t) ? shadowName(t) : t),
    partitionParent: `audit_log${SHADOW_SUFFIX}`,
  };
  let done = 0;
  let deadLetters = 0;
  let position: Position = START;
  try {
    const { rows: lock } = await admin.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(hashtext('orghub.rebuild'), hashtext($1)) AS ok`, [projection.name]);
    if (!lock[0].ok) throw new Error(`a rebuild of ${projection.name} is already running`);
    const resumed = opts.restart ? undefined : await resumable(admin, projection);
    if (resumed) {
      ({ position, events: done, deadLetters } = resumed);
    } else {
      await admin.query('DELETE FROM projection_rebuilds WHERE name = $1', [projection.name]);
      for (const t of projection.tables) await createShadowTable(admin, t);
      await admin.query(`INSERT INTO projection_rebuilds (name, version, position_tx, position) VALUES ($1, $2, '0'::xid8, 0)`, [projection.name, projection.version]);
    }
    const resumedFrom = done;
    const total = async () => Number((await admin.query(`BEGIN READ ONLY; SET LOCAL ROLE ${DEFAULT_PROJECTOR_ROLE}; SELECT count(*) AS n FROM events; COMMIT`) as unknown as pg.QueryResult[])[2].rows[0].n);
    let head = await total();

    const apply = async (batch: ReadAllBatch) => {
      const out = await applyBatch(admin, projection, batch.events, shadowTarget, months);
      const prev = position;
      deadLetters += out.deadLetters;
      done += batch.events.length;
      position = batch.next;
      const moved = await admin.query(
        `UPDATE projection_rebuilds SET position_tx = $2::xid8, position = $3, events_applied = $4, dead_letters = $5, updated_at = now()
         WHERE name = $1 AND position_tx = $6::xid8 AND position = $7`,
        [projection.name, position.tx.toString(), position.pos.toString(), done, deadLetters, prev.tx.toString(), prev.pos.toString()],
      );
      if (moved.rowCount !== 1) throw new Error(`the rebuild checkpoint of ${projection.name} is no longer at ${formatPosition(prev)}: another rebuild?`);
    };
    const inTx = async (fn: () => Promise<void>) => {
      await admin.query(`BEGIN; SET LOCAL ROLE ${opts.writerRole}; SET LOCAL synchronous_commit = off`);
      try {
        await fn();
        await admin.query('COMMIT');
      } catch (err) {
        await admin.query('ROLLBACK').catch(() => {});
        months.clear();
        throw err;
      }
    };
    const readAll: BatchReader = opts.read ?? ((after, batchSize) => store.readAll({ after, batchSize }));
    const read = (after: Position) => {
      const p = readAll(after, opts.batchSize);
      p.catch(() => {});
      return p;
    };

    // Catch up without locks, reading the next batch while writing this one.
    let next: Promise<ReadAllBatch> | undefined = read(position);
    while (next) {
      const batch: ReadAllBatch = await next;
      next = batch.caughtUp ? undefined : read(batch.next);
      if (batch.events.length) await inTx(() => apply(batch));
      if (done > head) head = done;
      opts.onProgress?.(done, head);
    }
    for (const t of projection.tables) await admin.query(`ANALYZE ${ident(shadowName(t))}`);

    if (opts.swap !== false) {
      await inTx(async () => {
        await admin.query(`RESET ROLE; SET LOCAL lock_timeout = '${SWAP_LOCK_TIMEOUT}'`);
        // Same order as the live handler writes them, so the two cannot deadlock.
        for (const t of projection.tables) await admin.query(`LOCK TABLE ${ident(t)} IN ACCESS EXCLUSIVE MODE`);
        await admin.query(`SET LOCAL ROLE ${opts.writerRole}`);
        for (;;) {
          const batch = await readAll(position, opts.batchSize);
          if (batch.events.length) await apply(batch);
          if (batch.caughtUp) break;
        }
        await admin.query('RESET ROLE');
        for (const t of projection.tables) await swapShadowTable(admin, t);
        await admin.query('DELETE FROM projection_rebuilds WHERE name = $1', [projection.name]);
        await admin.query(
          `INSERT INTO projection_checkpoints (name, version, position_tx, position, events_applied, dead_letters, updated_at)
           VALUES ($1, $2, $3::xid8, $4, $5, $6, now())
           ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, position_tx = EXCLUDED.position_tx, position = EXCLUDED.position,
             events_applied = EXCLUDED.events_applied, dead_letters = EXCLUDED.dead_letters, updated_at = now()`,
          [projection.name, projection.version, position.tx.toString(), position.pos.toString(), done, deadLetters],
        );
      });
      opts.onProgress?.(done, Math.max(head, done));
    }
    const seconds = (performance.now() - started) / 1000;
    return {
      projection: projection.name, version: projection.version, events: done, deadLetters, seconds,
      eventsPerSecond: (done - resumedFrom) / seconds, position: formatPosition(position), swapped: opts.swap !== false, resumedFrom,
    };
  } finally {
    await admin.end().catch(() => {});
  }
}

/** Drops leftover shadow tables of a projection (a rebuild that died, or `swap: false`) and its rebuild checkpoint. */
export async function dropShadowTables(databaseUrl: string, projection: Projection): Promise<void> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    for (const t of projection.tables) await c.query(`DROP TABLE IF EXISTS ${ident(shadowName(t))} CASCADE`);
    await c.query('DELETE FROM projection_rebuilds WHERE name = $1', [projection.name]);
  } finally {
    await c.end();
  }
}
