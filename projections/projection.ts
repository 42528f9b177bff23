import type { RecordedEvent } from '../hub/eventstore/eventStore.ts';

/**
 * A projection is plain data, as in Emmett: a name, a version, a filter and a batch handler.
 * The runner (`runner.ts`) calls `handle` inside the transaction that also moves the checkpoint,
 * as `orghub_projection_writer`, so a batch is applied exactly once even though reads are
 * at-least-once; handlers are idempotent all the same (upserts, ON CONFLICT), so a rebuild or a
 * second writer can never double-count.
 */
export interface Projection {
  /** Checkpoint and lock name; also the argument of `projections:rebuild`. */
  readonly name: string;
  /** Bumped when the fold or the tables change; a rebuild writes the new version to the checkpoint. */
  readonly version: number;
  /** Logical tables this projection writes (rebuilt and swapped together). */
  readonly tables: readonly string[];
  canHandle(event: RecordedEvent): boolean;
  /**
   * The rows of a batch depend only on its own events, never on rows an earlier batch wrote (and
   * no two batches write the same row): the runner may then write the next batch on a second
   * connection while the previous one is still writing. Each batch keeps its own transaction and
   * checkpoint compare-and-set, which waits for the previous batch's commit.
   */
  readonly independentBatches?: boolean;
  /**
   * Applies the events it can handle. Returns the events it refused (bad shape), which the runner
   * writes to `projection_dead_letters`; a throw means the SQL itself failed, and the runner then
   * isolates the poison event one by one.
   */
  handle(events: readonly RecordedEvent[], tx: ProjectionTx): Promise<Rejected[]>;
}

/** The transaction a handler writes in. `table` maps a logical table to the physical one (shadow tables during a rebuild). */
export interface ProjectionTx {
  query(sql: string, params?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
  table(logical: string): string;
  /** Ensures the audit_log month partition holding `at` exists (of the physical table). */
  ensureAuditPartition(at: string): Promise<void>;
}

/** An event a fold cannot apply, with the reason. */
export interface Rejected {
  event: RecordedEvent;
  error: string;
}

/** Result of a pure fold: rows to write and events refused. */
export interface Folded<R> {
  rows: R[];
  rejected: Rejected[];
}

/** Thrown by folds for a bad event; caught per event and turned into a dead letter. */
export class BadEventError extends Error {
  override name = 'BadEventError';
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function optString(obj: Record<string, unknown>, key: string): string | null {
  const v = obj[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new BadEventError(`data.${key} must be a string`);
  return v;
}

export function optInt(obj: Record<string, unknown>, key: string): number | null {
  const v = obj[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new BadEventError(`data.${key} must be an integer`);
  return v;
}

/** Runs `fold` per event; a BadEventError (or any throw) rejects only that event. */
export function foldEach<R>(events: readonly RecordedEvent[], fold: (e: RecordedEvent) => R | undefined): Folded<R> {
  const rows: R[] = [];
  const rejected: Rejected[] = [];
  for (const e of events) {
    try {
      const r = fold(e);
      if (r !== undefined) rows.push(r);
    } catch (err) {
      rejected.push({ event: e, error: (err as Error)?.message ?? String(err) });
    }
  }
  return { rows, rejected };
}
