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

/** The argument of `eventstore_append(p_steps jsonb)` for one batch: JSON text of its steps. */
export type AppendCall = string;

/** Kind codes understood by eventstore_append_step. */
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

/**
 * Builds the one-call form of a batch: steps of (org, round). Round r holds each stream's r-th
 * append of the batch, so a step touches each stream once and a stream's appends keep their order.
 */
export function buildAppendCall(batch: readonly AppendRequest[]): AppendCall {
  const rounds = new Map<string, number>();
  const steps = new Map<string, { o: string; r: number; a: unknown[]; e: unknown[] }>();
  batch.forEach((req, i) => {
    const key = `${req.org}\u0000${req.stream}`;
    const r = rounds.get(key) ?? 0;
    rounds.set(key, r + 1);
    const stepKey = `${req.org}\u0000${r}`;
    let step = steps.get(stepKey);
    if (!step) steps.set(stepKey, (step = { o: req.org, r, a: [], e: [] }));
    const { k, v } = kindOf(req.expected);
    step.a.push({ i, s: req.stream, k, v, n: req.events.length });
    req.events.forEach((e, q) => {
      step.e.push({ a: i, q, id: e.id, t: e.type, sv: e.schemaVersion, d: e.data, m: e.metadata, key: e.metadata.idempotencyKey ?? null });
    });
  });
  // A fixed org order (and the SQL's stream order) keeps row locks in one global order across batches.
  const ordered = [...steps.values()].sort((x, y) => (x.o < y.o ? -1 : x.o > y.o ? 1 : x.r - y.r));
  return JSON.stringify(ordered.map(({ o, a, e }) => ({ o, a, e })));
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
  for (let i = 0; i < out.length; i++) out[i] ??= new Error(`append ${i}: no outcome from eventstore_append`);
  return out;
}
