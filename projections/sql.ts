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

/** Separator of JSON texts in one parameter: JSON text never contains a raw control character. */
const JSON_SEP = '\x1f';

/**
 * `INSERT INTO table (cols) SELECT … FROM unnest(...) <tail>` with its parameters (one array literal
 * per column). A jsonb column travels as its JSON texts joined by U+001F (which JSON text always
 * escapes), split with `string_to_array` and cast per element: no escaping in JavaScript, and
 * Postgres parses a `jsonb[]` literal about ten times slower than text cast element by element
 * (measured: 4000 audit rows, 210 ms against 20 ms), which had made it the largest cost of an
 * audit batch. (jsonb columns here are NOT NULL; a null falls back to an escaped text array.)
 */
export function unnestInsert<R>(table: string, columns: readonly Column<R>[], rows: readonly R[], tail: string): { sql: string; params: unknown[] } {
  const params: string[] = [];
  const args: string[] = [];
  columns.forEach((c, i) => {
    const values = rows.map((r) => c.get(r));
    if (c.type === 'jsonb' && values.every((v) => typeof v === 'string')) {
      params.push((values as string[]).join(JSON_SEP));
      args.push(rows.length ? `string_to_array($${i + 1}::text, E'\\x1f')` : `$${i + 1}::text[]`);
      if (!rows.length) params[i] = '{}';
    } else {
      params.push(arrayLiteral(values));
      args.push(`$${i + 1}::${c.type === 'jsonb' ? 'text' : c.type}[]`);
    }
  });
  const names = columns.map((c) => c.name).join(', ');
  const aliases = columns.map((_, i) => `c${i}`).join(', ');
  const select = columns.map((c, i) => (c.type === 'jsonb' ? `u.c${i}::jsonb` : `u.c${i}`)).join(', ');
  return { sql: `INSERT INTO ${table} (${names}) SELECT ${select} FROM unnest(${args.join(', ')}) AS u(${aliases}) ${tail}`.trimEnd(), params };
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
