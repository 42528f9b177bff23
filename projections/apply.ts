import type pg from 'pg';
import type { Position, RecordedEvent } from '../hub/eventstore/eventStore.ts';
import type { Projection, ProjectionTx, Rejected } from './projection.ts';
import { unnestInsert, type Column } from './sql.ts';

/** The compare-and-set on the checkpoint failed: another writer moved it (takeover or rebuild swap). */
export class CheckpointConflictError extends Error {
  override name = 'CheckpointConflictError';
}

/** Where a batch writes: physical table names, and how to make an audit partition. */
export interface Target {
  table(logical: string): string;
  partitionParent: string;
}

export const LIVE: Target = { table: (t) => t, partitionParent: 'audit_log' };

export interface BatchOutcome {
  applied: number;
  deadLetters: number;
}

const DEAD_LETTER_COLUMNS: Column<Rejected & { projection: string }>[] = [
  { name: 'org_id', type: 'text', get: (r) => r.event.org },
  { name: 'projection', type: 'text', get: (r) => r.projection },
  { name: 'event_id', type: 'uuid', get: (r) => r.event.id },
  { name: 'position_tx', type: 'xid8', get: (r) => r.event.position.tx.toString() },
  { name: 'global_position', type: 'bigint', get: (r) => r.event.globalPosition.toString() },
  { name: 'type', type: 'text', get: (r) => r.event.type },
  { name: 'error', type: 'text', get: (r) => r.error.slice(0, 2000) },
];

function projectionTx(client: pg.ClientBase, target: Target, months: Set<string>, beforeNewPartition?: () => Promise<void>, onWrite?: () => void): ProjectionTx {
  return {
    query: (sql, params) => {
      onWrite?.();
      return client.query(sql, params);
    },
    table: target.table,
    async ensureAuditPartition(at) {
      const key = `${target.partitionParent}/${at}`;
      if (months.has(key)) return;
      // A batch written while the previous one is still open creates no partition before that one
      // ends: both would wait on the other (the creation's advisory and parent locks against the
      // JavaScript wait for the previous commit), a deadlock Postgres cannot see.
      if (beforeNewPartition) await beforeNewPartition();
      if (months.has(key)) return;
      await client.query('SELECT readmodel_ensure_partition_of($1, $2)', [target.partitionParent, at]);
      months.add(key);
    },
  };
}

/**
 * Applies one batch inside the caller's open transaction (role already the writer): the
 * handler's rows, the dead letters, then nothing else (the checkpoint is the caller's). If the
 * handler's SQL fails as a whole, the batch is redone one event per savepoint so that only the
 * events that fail go to dead letters and the projection never stalls on a poison event.
 */
export async function applyBatch(
  client: pg.ClientBase, projection: Projection, events: readonly RecordedEvent[], target: Target, months: Set<string>,
  opts: {
    savepointOpened?: boolean;
    /** Awaited before creating a partition this connection has not seen (pipelined batches). */
    beforeNewPartition?: () => Promise<void>;
    /** Called at the handler's first own statement: its partitions are ensured by then. */
    onWrite?: () => void;
  } = {},
): Promise<BatchOutcome> {
  const relevant = events.filter((e) => projection.canHandle(e));
  if (relevant.length === 0) return { applied: 0, deadLetters: 0 };
  const tx = projectionTx(client, target, months, opts.beforeNewPartition, opts.onWrite);
  let rejected: Rejected[];
  // The caller may open `SAVEPOINT batch` with its BEGIN (one round trip less); no RELEASE:
  // savepoints end with the transaction, and every round trip counts here.
  if (!opts.savepointOpened) await client.query('SAVEPOINT batch');
  try {
    rejected = await projection.handle(relevant, tx);
  } catch {
    await client.query('ROLLBACK TO SAVEPOINT batch');
    months.clear();
    rejected = [];
    for (const e of relevant) {
      await client.query('SAVEPOINT one');
      try {
        rejected.push(...(await projection.handle([e], tx)));
      } catch (err) {
        await client.query('ROLLBACK TO SAVEPOINT one');
        months.clear();
        rejected.push({ event: e, error: (err as Error)?.message ?? String(err) });
      }
    }
  }
  if (rejected.length > 0) {
    const rows = rejected.map((r) => ({ ...r, projection: projection.name }));
    const { sql, params } = unnestInsert(target.table('projection_dead_letters'), DEAD_LETTER_COLUMNS, rows, 'ON CONFLICT (projection, event_id) DO NOTHING');
    await client.query(sql, params);
  }
  return { applied: relevant.length - rejected.length, deadLetters: rejected.length };
}

/** A text literal for SQL sent without parameters (names come from code; positions are integers). */
function lit(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

/**
 * Moves the checkpoint from `prev` to `next` (compare-and-set), adds the batch's counters and
 * commits, in one round trip: a DO block raises when the stored position is not `prev`, and the
 * COMMIT after it then never runs. Throws CheckpointConflictError in that case (the caller rolls
 * back).
 */
export async function advanceCheckpointAndCommit(client: pg.ClientBase, name: string, version: number, prev: Position, next: Position, events: number, deadLetters: number): Promise<void> {
  const sql = `DO $cp$ BEGIN
    INSERT INTO projection_checkpoints AS c (name, version, position_tx, position, events_applied, dead_letters, updated_at)
    VALUES (${lit(name)}, ${Number(version)}, '${next.tx}'::xid8, ${next.pos}, ${Number(events)}, ${Number(deadLetters)}, now())
    ON CONFLICT (name) DO UPDATE SET position_tx = EXCLUDED.position_tx, position = EXCLUDED.position,
      events_applied = c.events_applied + EXCLUDED.events_applied, dead_letters = c.dead_letters + EXCLUDED.dead_letters, updated_at = now()
    WHERE c.position_tx = '${prev.tx}'::xid8 AND c.position = ${prev.pos};
    IF NOT FOUND THEN RAISE EXCEPTION 'projection checkpoint moved' USING ERRCODE = 'OH001'; END IF;
  END $cp$; COMMIT`;
  try {
    await client.query(sql);
  } catch (err) {
    if ((err as { code?: string }).code === 'OH001') throw new CheckpointConflictError(`checkpoint of ${name} is no longer at ${prev.tx}:${prev.pos}`);
    throw err;
  }
}

export interface Checkpoint {
  version: number;
  position: Position;
}

export async function loadCheckpoint(client: pg.ClientBase | pg.Pool, name: string): Promise<Checkpoint | undefined> {
  const { rows } = await client.query<{ version: number; tx: string; pos: string }>(
    'SELECT version, position_tx::text AS tx, position::text AS pos FROM projection_checkpoints WHERE name = $1',
    [name],
  );
  return rows[0] ? { version: rows[0].version, position: { tx: BigInt(rows[0].tx), pos: BigInt(rows[0].pos) } } : undefined;
}
