import type { ProjectionTx } from './projection.ts';

/**
 * Set-based writes: one `INSERT … SELECT FROM unnest($1::t[], $2::t[], …)` per table and batch, so
 * a batch of thousands of rows costs one statement and one round trip, with exact row estimates
 * (the same technique as the event store's append, docs/eventstore.md). Arrays are sent as
 * literal text built here: node-postgres' own array serializer cost more than the insert.
 */
export interface Column<R> {
  name: string;
  /** Postgres element type of the parameter array (text, uuid, bigint, timestamptz, jsonb, int, boolean). */
  type: string;
  get(row: R): string | number | boolean | null;
}

/** A Postgres array literal (`{"a",NULL,"b"}`), every element quoted so any text is safe. */
export function arrayLiteral(values: ReadonlyArray<string | number | boolean | null>): string {
  let body = '';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i) body += ',';
    if (v === null) body += 'NULL';
    else if (typeof v === 'number') body += String(v);
    else if (typeof v === 'boolean') body += v ? 't' : 'f';
    else body += `"${v.replace(/[\\"]/g, '\\$&')}"`;
  }
  return `{${body}}`;
}

/** `INSERT INTO table (cols) SELECT * FROM unnest(...) <tail>` with its parameters (one array literal per column). */
export function unnestInsert<R>(table: string, columns: readonly Column<R>[], rows: readonly R[], tail: string): { sql: string; params: unknown[] } {
  const params = columns.map((c) => arrayLiteral(rows.map((r) => c.get(r))));
  const names = columns.map((c) => c.name).join(', ');
  const args = columns.map((c, i) => `$${i + 1}::${c.type}[]`).join(', ');
  return { sql: `INSERT INTO ${table} (${names}) SELECT * FROM unnest(${args}) ${tail}`.trimEnd(), params };
}

/**
 * Inserts rows that are normally new: a plain INSERT first (ON CONFLICT costs a speculative
 * insertion per row, about half the insert time on a partitioned table), and only when a key
 * already exists (a replayed batch, a second writer) the same rows again with `onConflict`, so
 * the handler stays idempotent.
 */
export async function insertNew<R>(tx: ProjectionTx, table: string, columns: readonly Column<R>[], rows: readonly R[], onConflict: string): Promise<void> {
  const plain = unnestInsert(table, columns, rows, '');
  await tx.query('SAVEPOINT insert_new');
  try {
    await tx.query(plain.sql, plain.params);
    await tx.query('RELEASE SAVEPOINT insert_new');
  } catch (err) {
    await tx.query('ROLLBACK TO SAVEPOINT insert_new');
    if ((err as { code?: string }).code !== '23505') throw err;
    await tx.query(`${plain.sql} ${onConflict}`, plain.params);
  }
}

/** A quoted identifier (physical table names come from the catalog or from code, never from users). */
export function ident(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`invalid identifier ${JSON.stringify(name)}`);
  return `"${name}"`;
}
