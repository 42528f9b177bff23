/**
 * Set-based writes: one `INSERT … SELECT FROM unnest($1::t[], $2::t[], …)` per table and batch, so
 * a batch of thousands of rows costs one statement and one round trip, with exact row estimates
 * (the same technique as the event store's append, docs/eventstore.md).
 */
export interface Column<R> {
  name: string;
  /** Postgres element type of the parameter array (text, uuid, bigint, timestamptz, jsonb, int, boolean). */
  type: string;
  get(row: R): string | number | boolean | null;
}

/** `INSERT INTO table (cols) SELECT * FROM unnest(...) <tail>` with its parameters (one array per column). */
export function unnestInsert<R>(table: string, columns: readonly Column<R>[], rows: readonly R[], tail: string): { sql: string; params: unknown[] } {
  const params = columns.map((c) => rows.map((r) => c.get(r)));
  const names = columns.map((c) => c.name).join(', ');
  const args = columns.map((c, i) => `$${i + 1}::${c.type}[]`).join(', ');
  return { sql: `INSERT INTO ${table} (${names}) SELECT * FROM unnest(${args}) ${tail}`, params };
}

/** A quoted identifier (physical table names come from the catalog or from code, never from users). */
export function ident(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`invalid identifier ${JSON.stringify(name)}`);
  return `"${name}"`;
}
