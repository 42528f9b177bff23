/**
 * The event store boundary: the system of record for tenant commands and audit events.
 * Adapters: `postgresEventStore.ts` (default) and `esdbEventStore.ts`. Both pass `conformance.ts`.
 * See docs/eventstore.md.
 */
import type { LatencySnapshot } from '../core/latencyHistogram.ts';

/** Skip the concurrency check. */
export const ANY = 'any' as const;
/** The stream must not exist yet (it has no events). */
export const NO_STREAM = 'no_stream' as const;
/** The stream must have at least one event. */
export const STREAM_EXISTS = 'stream_exists' as const;

/**
 * Optimistic concurrency: a named constant, or the stream position of the stream's last event
 * (0 after the first event; -1 is the same as NO_STREAM).
 */
export type ExpectedVersion = typeof ANY | typeof NO_STREAM | typeof STREAM_EXISTS | number | bigint;

/** Who and what caused an event. `actor` is the token `sub` (or a system name such as `hub`). */
export interface EventMetadata {
  actor: string;
  session?: string;
  node?: string;
  correlationId?: string;
  causationId?: string;
  /** Unique per org: an append carrying a recorded key appends nothing and returns the original. */
  idempotencyKey?: string;
}

export interface NewEvent<D = unknown> {
  /** UUIDv7; generated when absent. */
  id?: string;
  type: string;
  /** Version of `data`'s schema; default 1. */
  schemaVersion?: number;
  data: D;
  metadata: EventMetadata;
}

/**
 * A place in the global order. Postgres: (transaction id, global position), because rows become
 * visible in transaction order, not sequence order. EventStoreDB: (commit, prepare) of `$all`.
 * Compare with `comparePosition`; serialize with `formatPosition` ("tx:pos").
 */
export interface Position {
  readonly tx: bigint;
  readonly pos: bigint;
}

/** Before every event. */
export const START: Position = Object.freeze({ tx: 0n, pos: 0n });

export interface RecordedEvent<D = unknown> {
  id: string;
  org: string;
  stream: string;
  type: string;
  schemaVersion: number;
  data: D;
  metadata: EventMetadata;
  /** ISO 8601. */
  recordedAt: string;
  /** 0-based position in its stream. */
  streamPosition: bigint;
  /** Global position (Postgres `global_position`, EventStoreDB commit position). */
  globalPosition: bigint;
  /** Cursor for readAll / subscribe: resume strictly after it. */
  position: Position;
}

export interface AppendOptions {
  expectedVersion?: ExpectedVersion;
}

export interface AppendResult {
  /** Stream position of the stream's last event after the append (for a duplicate: of the original event). */
  nextExpectedVersion: bigint;
  /** Global positions of the appended events, in order. */
  positions: bigint[];
  ids: string[];
  /** True when an idempotency key was already recorded: nothing was appended, these are the original's ids. */
  duplicate: boolean;
}

export interface ReadStreamOptions {
  /** First stream position to return; default 0. */
  from?: bigint | number;
  /** Default 1000. */
  maxCount?: number;
}

export interface ReadAllFilter {
  /** Only this org's events (read through RLS). Without it the read is cross-org (projector role). */
  org?: string;
  /** Only streams whose name starts with this. */
  streamPrefix?: string;
  /** Only these event types. */
  types?: readonly string[];
}

export interface ReadAllOptions extends ReadAllFilter {
  /** Exclusive cursor; default START. Accepts a Position or its "tx:pos" string. */
  after?: Position | string;
  /** Default 500. */
  batchSize?: number;
}

export interface ReadAllBatch {
  events: RecordedEvent[];
  /** Cursor to pass as `after` next time (unchanged when nothing was read). */
  next: Position;
  /** True when fewer than batchSize events came back: the reader has caught up for now. */
  caughtUp: boolean;
}

export interface SubscribeOptions extends ReadAllFilter {
  /**
   * Exclusive start: a position, 'start' (everything) or 'end' (only appends that begin after the
   * subscription starts; an append in flight at that moment may be missed). Projections pass their
   * stored position.
   */
  from: Position | string | 'start' | 'end';
  batchSize?: number;
  /** Called with each batch, in order; the next batch waits for it. A throw is retried after a delay. */
  handler: (events: RecordedEvent[], ctx: { position: Position }) => Promise<void> | void;
  onError?: (err: unknown) => void;
}

export interface Subscription {
  /** Stops delivering and waits for an in-flight handler call to finish. */
  stop(): Promise<void>;
  /** Resolves once the subscription has resolved 'start'/'end' and is polling. */
  readonly ready: Promise<void>;
}

/** Counters of an adapter's write path, for /metrics (monotonic unless named otherwise). */
export interface EventStoreStats {
  /** appendToStream calls that reached the database. */
  appends: number;
  /** Transactions they were committed in (group commit: appends / batches = mean batch size). */
  batches: number;
  /** Transactions that failed as a whole (every append in them got the error). */
  failedBatches: number;
  /** Appends queued or in flight right now (a gauge). */
  pending: number;
  /** Appends refused because the queue (or the org's share of it) was full. */
  overloaded?: number;
  /** Appends that failed alone with a data error (their batch-mates were committed). */
  dataErrors?: number;
  /** Seconds from appendToStream to its commit, for successful appends (where the adapter measures it). */
  appendLatency?: LatencySnapshot;
}

export interface EventStore {
  appendToStream(org: string, stream: string, events: NewEvent[], options?: AppendOptions): Promise<AppendResult>;
  readStream(org: string, stream: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  readAll(options?: ReadAllOptions): Promise<ReadAllBatch>;
  subscribe(options: SubscribeOptions): Subscription;
  /**
   * Offboarding: deletes every event and stream of the org (and, in Postgres, its read-model rows)
   * and leaves a tombstone; answers how many events were deleted. Adapters that cannot erase lack it.
   */
  eraseOrg?(org: string, actor: string): Promise<number>;
  /** Write-path counters, where the adapter keeps them. */
  stats?(): EventStoreStats;
  /**
   * Sets each org's share of the write queue relative to the others (its tier's `commitWeight`);
   * read at every batch. Adapters without a shared queue lack it. Until called, every org weighs 1.
   */
  weighOrgs?(weightOf: (org: string) => number): void;
  /** Checks the store answers, on a connection of its own (never one that appends wait for); for /ready. */
  ping?(): Promise<void>;
  close(): Promise<void>;
}

export function formatPosition(p: Position): string {
  return `${p.tx}:${p.pos}`;
}

/** Parses "tx:pos"; throws on anything else. */
export function parsePosition(p: Position | string): Position {
  if (typeof p !== 'string') return p;
  const m = /^(\d+):(\d+)$/.exec(p);
  if (!m) throw new TypeError(`invalid position ${JSON.stringify(p)} (expected "tx:pos")`);
  return { tx: BigInt(m[1]), pos: BigInt(m[2]) };
}

export function comparePosition(a: Position, b: Position): number {
  if (a.tx !== b.tx) return a.tx < b.tx ? -1 : 1;
  if (a.pos !== b.pos) return a.pos < b.pos ? -1 : 1;
  return 0;
}

/** Every batch from `after` until caught up. */
export async function* readAllBatches(store: EventStore, options: ReadAllOptions = {}): AsyncGenerator<ReadAllBatch> {
  let after = options.after ?? START;
  for (;;) {
    const batch = await store.readAll({ ...options, after });
    if (batch.events.length > 0) yield batch;
    after = batch.next;
    if (batch.caughtUp) return;
  }
}
