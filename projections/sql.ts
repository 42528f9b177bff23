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

type Scalar = string | number | boolean | null;
const NEEDS_ESCAPE = /[\\"]/;
const ESCAPE = /[\\"]/g;

/** A Postgres array literal (`{"a",NULL,"b"}`), every element quoted so any text is safe. */
export function arrayLiteral(values: ReadonlyArray<Scalar>): string {
  return arrayLiteralOf(values, (v) => v);
}

/**
 * The array literal of `get` over `rows`, built in one pass (no intermediate array of values; the
 * escaping regex runs only on the rare text that holds a quote or a backslash): building these
 * literals was the projector's largest cost in JavaScript after parsing the events.
 */
export function arrayLiteralOf<R>(rows: ReadonlyArray<R>, get: (row: R) => Scalar): string {
  let body = '{';
  for (let i = 0; i < rows.length; i++) {
    const v = get(rows[i]);
    if (i) body += ',';
    if (v === null) body += 'NULL';
    else if (typeof v === 'string') body += NEEDS_ESCAPE.test(v) ? `"${v.replace(ESCAPE, '\\$&')}"` : `"${v}"`;
    else if (typeof v === 'number') body += String(v);
    else body += v ? 't' : 'f';
  }
  return `${body}}`;
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
  const src = unnestSource(columns, rows);
  const names = columns.map((c) => c.name).join(', ');
  return { sql: `INSERT INTO ${table} (${names}) SELECT ${src.select} FROM ${src.from} ${tail}`.trimEnd(), params: src.params };
}

/**
 * The `unnest(...) AS u(c0, c1, …)` source of `unnestInsert`, for statements that use the rows
 * otherwise (a CTE): `select` lists the columns in order, cast (jsonb) as the table wants them.
 * `first` numbers the parameters from $first.
 */
export function unnestSource<R>(columns: readonly Column<R>[], rows: readonly R[], first = 1): { from: string; select: string; params: string[] } {
  const params: string[] = [];
  const args: string[] = [];
  columns.forEach((c, i) => {
    const n = i + first;
    const joined = c.type === 'jsonb' && rows.length ? joinJson(rows, c.get) : undefined;
    if (joined !== undefined) {
      params.push(joined);
      args.push(`string_to_array($${n}::text, E'\\x1f')`);
    } else {
      params.push(arrayLiteralOf(rows, c.get));
      args.push(`$${n}::${c.type === 'jsonb' ? 'text' : c.type}[]`);
    }
  });
  const aliases = columns.map((_, i) => `c${i}`).join(', ');
  const select = columns.map((c, i) => (c.type === 'jsonb' ? `u.c${i}::jsonb` : `u.c${i}`)).join(', ');
  return { from: `unnest(${args.join(', ')}) AS u(${aliases})`, select, params };
}

/** JSON texts joined by JSON_SEP, or undefined when one is not a text (null). */
function joinJson<R>(rows: ReadonlyArray<R>, get: (row: R) => Scalar): string | undefined {
  let out = '';
  for (let i = 0; i < rows.length; i++) {
    const v = get(rows[i]);
    if (typeof v !== 'string') return undefined;
    out += i ? JSON_SEP + v : v;
  }
  return out;
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
