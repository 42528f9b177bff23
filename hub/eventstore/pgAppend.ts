import type { ExpectedVersion, AppendResult } from './eventStore.ts';
import { ANY, NO_STREAM, STREAM_EXISTS } from './eventStore.ts';
import type { PreparedEvent } from './envelope.ts';
import { ConcurrencyError, InvalidEventError } from './errors.ts';

/** One appendToStream call waiting for its group-commit batch. */
export interface AppendRequest {
  org: string;
  stream: string;
  expected: ExpectedVersion;
  events: PreparedEvent[];
}

/** The SQL that runs one batch: a call of `eventstore_append_v2(...)` with the batch as array literals. */
export type AppendCall = string;

/** Kind codes understood by eventstore_append_step_v2. */
function kindOf(expected: ExpectedVersion): { k: number; v: number | null } {
  if (expected === ANY) return { k: 0, v: null };
  if (expected === NO_STREAM) return { k: 1, v: null };
  if (expected === STREAM_EXISTS) return { k: 2, v: null };
  const v = Number(expected);
  if (!Number.isSafeInteger(v) || v < -1) throw new InvalidEventError(`invalid expectedVersion ${String(expected)}`);
  return v === -1 ? { k: 1, v: null } : { k: 3, v };
}

/** Validates the expected version before the request is queued (so a bad one fails alone). */
export function checkExpected(expected: ExpectedVersion): void {
  kindOf(expected);
}

/** Byte order of the UTF-8 encodings, which is Postgres' COLLATE "C" order (the lock order). */
function byteOrder(a: string, b: string): number {
  return a === b ? 0 : Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** One element of a Postgres array literal (always quoted, so any text is safe). */
function el(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number') return String(v);
  return `"${v.replace(/[\\"]/g, '\\$&')}"`;
}

/** A Postgres array literal as an SQL string literal with a cast (`'{...}'::type[]`). */
function arr(values: ReadonlyArray<string | number | null | undefined>, type: string): string {
  let body = '';
  for (let i = 0; i < values.length; i++) body += (i ? ',' : '') + el(values[i]);
  return `${literal(`{${body}}`)}::${type}[]`;
}

/** Same as pg's escapeLiteral: '...' with quotes doubled, E'...' when backslashes are present. */
function literal(s: string): string {
  const q = s.replace(/'/g, "''");
  return s.includes('\\') ? ` E'${q.replace(/\\/g, '\\\\')}'` : `'${q}'`;
}

/**
 * Builds the call for one batch, as steps of one org each, orgs in a fixed order (so row locks
 * are taken in one global (org, stream) order across batches). The common case, an org whose
 * appends are all ANY, is one step in which a stream may appear several times (each append gets
 * its slice of the stream, in batch order). Streams with a NO_STREAM / STREAM_EXISTS / numeric
 * expectation are split into rounds: round r holds the r-th append of each such stream, so every
 * check sees the outcome of the appends before it; round 0 also carries the org's ANY-only streams.
 */
export function buildAppendCall(batch: readonly AppendRequest[]): AppendCall {
  const byOrg = new Map<string, number[]>();
  batch.forEach((req, i) => {
    let list = byOrg.get(req.org);
    if (!list) byOrg.set(req.org, (list = []));
    list.push(i);
  });
  const orgs: string[] = [];
  const flags: number[] = [];
  const aEnd: number[] = [];
  const eEnd: number[] = [];
  const ai: number[] = [], as: string[] = [], ak: number[] = [], av: (number | null)[] = [], an: number[] = [];
  const ea: number[] = [], eq: number[] = [], eid: string[] = [], et: string[] = [], esv: number[] = [];
  const ed: string[] = [], em: string[] = [], ekey: (string | null)[] = [];
  // the lean ANY path's layout (see eventstore_append_step_v2)
  const uEnd: number[] = [], us: string[] = [], ut: number[] = [];
  const au: number[] = [], aoff: number[] = [], ae0: number[] = [], es: string[] = [], eu: number[] = [], eoff: number[] = [];

  const pushStep = (org: string, idx: readonly number[], conditional: boolean) => {
    let f = conditional ? 2 : 0;
    // distinct streams in byte order (= COLLATE "C"), with their event totals
    const totals = new Map<string, number>();
    for (const i of idx) totals.set(batch[i].stream, (totals.get(batch[i].stream) ?? 0) + batch[i].events.length);
    const distinct = [...totals.keys()].sort(byteOrder);
    const uIndex = new Map<string, number>();
    distinct.forEach((st, j) => {
      uIndex.set(st, j + 1);
      us.push(st);
      ut.push(totals.get(st)!);
    });
    const seen = new Map<string, number>();
    const eStart = ea.length;
    for (const i of idx) {
      const req = batch[i];
      const { k, v } = kindOf(req.expected);
      const u = uIndex.get(req.stream)!;
      const off = seen.get(req.stream) ?? 0;
      seen.set(req.stream, off + req.events.length);
      ai.push(i);
      as.push(req.stream);
      ak.push(k);
      av.push(v);
      an.push(req.events.length);
      au.push(u);
      aoff.push(off);
      ae0.push(ea.length - eStart + 1);
      req.events.forEach((e, q) => {
        const key = e.metadata.idempotencyKey ?? null;
        if (key !== null) f |= 1;
        es.push(req.stream);
        eu.push(u);
        eoff.push(off + q);
        ea.push(i);
        eq.push(q);
        eid.push(e.id);
        et.push(e.type);
        esv.push(e.schemaVersion);
        ed.push(JSON.stringify(e.data ?? null));
        em.push(JSON.stringify(e.metadata));
        ekey.push(key);
      });
    }
    orgs.push(org);
    flags.push(f);
    aEnd.push(ai.length);
    eEnd.push(ea.length);
    uEnd.push(us.length);
  };

  for (const org of [...byOrg.keys()].sort()) {
    const idx = byOrg.get(org)!;
    const conditional = new Set<string>();
    for (const i of idx) if (kindOf(batch[i].expected).k !== 0) conditional.add(batch[i].stream);
    if (conditional.size === 0) {
      pushStep(org, idx, false);
      continue;
    }
    const rounds: number[][] = [[]];
    const seen = new Map<string, number>();
    for (const i of idx) {
      const s = batch[i].stream;
      if (!conditional.has(s)) {
        rounds[0].push(i);
        continue;
      }
      const r = seen.get(s) ?? 0;
      seen.set(s, r + 1);
      (rounds[r] ??= []).push(i);
    }
    for (const round of rounds) pushStep(org, round, true);
  }

  return (
    `SELECT * FROM eventstore_append_v2(${arr(orgs, 'text')}, ${arr(flags, 'int')}, ${arr(aEnd, 'int')}, ${arr(eEnd, 'int')}, ${arr(uEnd, 'int')}, ` +
    `${arr(ai, 'int')}, ${arr(as, 'text')}, ${arr(ak, 'int')}, ${arr(av, 'bigint')}, ${arr(an, 'int')}, ` +
    `${arr(ea, 'int')}, ${arr(eq, 'int')}, ${arr(eid, 'uuid')}, ${arr(et, 'text')}, ${arr(esv, 'int')}, ${arr(ed, 'jsonb')}, ${arr(em, 'jsonb')}, ${arr(ekey, 'text')}, ` +
    `${arr(us, 'text')}, ${arr(ut, 'int')}, ${arr(au, 'int')}, ${arr(aoff, 'int')}, ${arr(ae0, 'int')}, ${arr(es, 'text')}, ${arr(eu, 'int')}, ${arr(eoff, 'int')})`
  );
}

export interface OutcomeRow {
  idx: number;
  status: 'ok' | 'duplicate' | 'conflict' | 'error';
  version: string | null;
  positions: string[] | null;
  ids: string[] | null;
  message: string | null;
}

function describe(expected: ExpectedVersion): string {
  return typeof expected === 'string' ? expected : String(expected);
}

/** Maps the function's rows back to one result or error per request, in batch order. */
export function mapOutcomes(batch: readonly AppendRequest[], rows: readonly OutcomeRow[]): Array<AppendResult | Error> {
  const out: Array<AppendResult | Error> = new Array(batch.length);
  for (const row of rows) {
    const req = batch[row.idx];
    if (!req) continue;
    switch (row.status) {
      case 'ok':
      case 'duplicate':
        out[row.idx] = {
          nextExpectedVersion: BigInt(row.version ?? -1),
          positions: (row.positions ?? []).map((p) => BigInt(p)),
          ids: row.ids ?? [],
          duplicate: row.status === 'duplicate',
        };
        break;
      case 'conflict':
        out[row.idx] = new ConcurrencyError(req.stream, describe(req.expected), row.version === null ? undefined : BigInt(row.version));
        break;
      default:
        out[row.idx] = new InvalidEventError(`append to ${req.stream} rejected: ${row.message ?? 'unknown error'}`);
    }
  }
  for (let i = 0; i < out.length; i++) out[i] ??= new Error(`append ${i}: no outcome from eventstore_append_v2`);
  return out;
}
