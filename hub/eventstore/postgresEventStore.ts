import pg from 'pg';
import type {
  EventStore, AppendResult, NewEvent, AppendOptions, ReadStreamOptions, ReadAllOptions, ReadAllBatch,
  RecordedEvent, SubscribeOptions, Subscription, Position, ReadAllFilter,
} from './eventStore.ts';
import { ANY, START, parsePosition } from './eventStore.ts';
import { prepareEvents } from './envelope.ts';
import { createGroupCommit } from './groupCommit.ts';
import { buildAppendCall, checkExpected, mapOutcomes, type AppendRequest, type OutcomeRow } from './pgAppend.ts';
import { pollingSubscription } from './pollingSubscription.ts';
import { LatencyHistogram } from '../core/latencyHistogram.ts';
import { EventStoreOverloadedError, EventStoreUnavailableError, InvalidEventError } from './errors.ts';
import { DEFAULT_APP_ROLE, DEFAULT_PROJECTOR_ROLE, assertRoleName } from './roles.ts';

export interface PostgresEventStoreOptions {
  /** Owner connection (DATABASE_URL). Tenant statements still run as `appRole` under RLS. */
  databaseUrl?: string;
  /** ORGHUB_DATABASE_APP_ROLE; default orghub_app. */
  appRole?: string;
  /** BYPASSRLS role for cross-org readAll (projector); default orghub_projector. */
  projectorRole?: string;
  /** ORGHUB_GROUP_COMMIT_MS; default 2. */
  groupCommitMs?: number;
  /** ORGHUB_GROUP_COMMIT_MAX; default 500. */
  groupCommitMax?: number;
  /** Batches in flight at once; default 4. */
  groupCommitConcurrency?: number;
  /**
   * A queue of at least twice this many appends is split by org over the idle batch slots, so
   * several backends (cores) work on it at once; default 16.
   */
  groupCommitSplitMin?: number;
  /** ORGHUB_GROUP_COMMIT_QUEUE: appends queued at most; past it an append fails `overloaded`. Default 20000. */
  groupCommitQueue?: number;
  /** ORGHUB_GROUP_COMMIT_QUEUE_PER_ORG: appends one org may have queued; default 5000. */
  groupCommitQueuePerOrg?: number;
  /** ORGHUB_GROUP_COMMIT_SLOTS_PER_ORG: in-flight batches one org may hold; default concurrency - 1. */
  groupCommitSlotsPerOrg?: number;
  /** ORGHUB_GROUP_COMMIT_ACK_SLICE: callers answered per event-loop turn after a flush (0: the whole batch at once); default 32. */
  groupCommitAckSlice?: number;
  /** ORGHUB_GROUP_COMMIT_ORG_WINDOW: appends one org may have in flight per unit of its tier weight while another org is active (0: no window); default 64 (128 for a `standard` org). */
  groupCommitOrgWindow?: number;
  /** ORGHUB_GROUP_COMMIT_ACTIVE_MS: how recently another org must have appended for the window to apply; default 1000. */
  groupCommitActiveMs?: number;
  /** Pool size; default 8 (appends use at most groupCommitConcurrency of them). */
  poolSize?: number;
  /** How long one statement may take before failing with `unavailable`; default 5000 ms. */
  queryTimeoutMs?: number;
  /** How long to wait for a connection before failing with `unavailable`; default 1500 ms. */
  connectTimeoutMs?: number;
  /** Subscription poll interval when no NOTIFY arrives; default 200 ms. */
  pollMs?: number;
  /** Reports background errors (idle connection loss, listener loss, subscription retries). */
  onError?: (err: unknown) => void;
}

const CHANNEL = 'orghub_events';
const COLUMNS = `org_id, stream_id, stream_position::text AS stream_position, global_position::text AS global_position,
  transaction_id::text AS tx, event_id, type, schema_version, data, metadata, recorded_at`;

interface EventRow {
  org_id: string; stream_id: string; stream_position: string; global_position: string; tx: string;
  event_id: string; type: string; schema_version: number; data: unknown; metadata: RecordedEvent['metadata']; recorded_at: Date;
}

function toRecorded(r: EventRow): RecordedEvent {
  const pos = BigInt(r.global_position);
  return {
    id: r.event_id, org: r.org_id, stream: r.stream_id, type: r.type, schemaVersion: r.schema_version,
    data: r.data, metadata: r.metadata, recordedAt: r.recorded_at.toISOString(),
    streamPosition: BigInt(r.stream_position), globalPosition: pos, position: { tx: BigInt(r.tx), pos },
  };
}

/** SQLSTATE classes that mean "the database is not there right now" rather than "your statement is wrong". */
function isUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true; // socket errors, timeouts, terminated connections
  return /^(08|53|57P|58)/.test(code);
}

function wrap(err: unknown, what: string): unknown {
  if (err instanceof EventStoreUnavailableError) return err;
  return isUnavailable(err) ? new EventStoreUnavailableError(`event store unavailable (${what}): ${(err as Error)?.message ?? err}`, { cause: err }) : err;
}

const RETRYABLE = new Set(['40P01', '40001']); // deadlock, serialization failure: nothing committed

/**
 * Errors the same input will always cause: data exceptions (class 22, e.g. a jsonb literal
 * Postgres cannot hold), integrity violations other than a unique race (class 23: a retry of
 * 23505 sees the committed key and reports a duplicate) and program limits (class 54, e.g. an
 * index row too large). Retrying them is useless, and they must fail only the append that caused
 * them; everything else (connection loss, timeouts, deadlocks) is transient.
 */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return false;
  return code.startsWith('22') || (code.startsWith('23') && code !== '23505') || code.startsWith('54');
}

/** How long an `overloaded` caller should wait: about one busy batch. */
const OVERLOADED_RETRY_MS = 100;

export function createPostgresEventStore(options: PostgresEventStoreOptions = {}): EventStore {
  const appRole = assertRoleName(options.appRole ?? DEFAULT_APP_ROLE);
  const projectorRole = assertRoleName(options.projectorRole ?? DEFAULT_PROJECTOR_ROLE);
  const onError = options.onError ?? (() => {});
  const connectionString = options.databaseUrl ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
  const pool = new pg.Pool({
    connectionString,
    max: options.poolSize ?? 8,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 1500,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    // A server that stops answering (partition) must not hang callers: the query fails as
    // `unavailable`, and a retry with the same idempotency key settles whether it committed.
    query_timeout: options.queryTimeoutMs ?? 5000,
  });
  // An idle client losing its server emits here; without a listener the process would crash.
  pool.on('error', (err) => onError(wrap(err, 'idle connection')));
  let closed = false;

  /**
   * Checks a client out with an error listener attached. pg-pool removes its own listener while a
   * client is checked out, so a connection lost mid-transaction would otherwise emit an unhandled
   * 'error' and crash the process.
   */
  async function checkout(what: string): Promise<{ client: pg.PoolClient; release(broken: unknown): void }> {
    if (closed) throw new EventStoreUnavailableError('event store is closed');
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw wrap(err, what);
    }
    let lost: unknown;
    const onLost = (err: unknown) => (lost = err);
    client.on('error', onLost);
    return {
      client,
      release(broken: unknown) {
        client.off('error', onLost);
        const b = broken ?? lost;
        client.release(b instanceof Error ? b : b === undefined ? undefined : true);
      },
    };
  }

  /** Runs `fn` in a transaction as `role`; with `org`, app.org_id is set so RLS shows only that org. */
  async function tx<T>(what: string, role: string, org: string | undefined, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const { client, release } = await checkout(what);
    let broken: unknown;
    try {
      await client.query(`BEGIN; SET LOCAL ROLE ${role}`);
      if (org !== undefined) await client.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      if (isUnavailable(err)) broken = err;
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      throw wrap(err, what);
    } finally {
      release(broken);
    }
  }

  // --- append (group commit) ---
  let notifyPending = false;
  function announce(): void {
    // One NOTIFY at a time, outside the append transaction: a NOTIFY inside it would serialize commits.
    if (notifyPending) return;
    notifyPending = true;
    pool.query(`SELECT pg_notify('${CHANNEL}', '')`).catch((err: unknown) => onError(wrap(err, 'notify'))).finally(() => (notifyPending = false));
  }

  /**
   * One batch, one round trip: BEGIN, role switch, the append function and COMMIT go as a single
   * simple-protocol query (the batch's arrays are escaped literals), because round trips cost more
   * than the SQL for small batches.
   */
  async function appendBatch(call: string): Promise<OutcomeRow[]> {
    const { client, release } = await checkout('append');
    let broken: unknown;
    try {
      const sql = `BEGIN; SET LOCAL ROLE ${appRole}; ${call}; COMMIT`;
      const results = (await client.query(sql)) as unknown as pg.QueryResult<OutcomeRow>[];
      return results[2].rows;
    } catch (err) {
      if (isUnavailable(err)) broken = err;
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      throw wrap(err, 'append');
    } finally {
      release(broken);
    }
  }

  let dataErrors = 0;

  /**
   * A batch whose transaction failed with a data error is bisected: each half is retried as its
   * own transaction (in order, so a stream's appends keep their order), down to the one append
   * that causes the error, which alone fails with `invalid`. Its batch-mates commit. A transient
   * error in a half fails that half's appends only (the other half may have committed).
   */
  async function flush(batch: AppendRequest[]): Promise<Array<AppendResult | Error>> {
    try {
      return await flushOnce(batch);
    } catch (err) {
      if (!isDataError(err)) throw err;
      return bisect(batch, err);
    }
  }

  async function bisect(batch: AppendRequest[], err: unknown): Promise<Array<AppendResult | Error>> {
    if (batch.length === 1) {
      dataErrors++;
      const e = err as { code?: string; message?: string };
      return [new InvalidEventError(`append to ${batch[0].stream} rejected by the event store: ${e.message ?? err} (SQLSTATE ${e.code})`, { cause: err })];
    }
    const mid = batch.length >> 1;
    const out: Array<AppendResult | Error> = [];
    for (const half of [batch.slice(0, mid), batch.slice(mid)]) {
      try {
        out.push(...(await flushOnce(half)));
      } catch (e) {
        if (isDataError(e)) out.push(...(await bisect(half, e)));
        else for (let i = 0; i < half.length; i++) out.push(e as Error);
      }
    }
    return out;
  }

  async function flushOnce(batch: AppendRequest[]): Promise<Array<AppendResult | Error>> {
    const call = buildAppendCall(batch);
    for (let attempt = 1; ; attempt++) {
      try {
        const rows = await appendBatch(call);
        announce();
        return mapOutcomes(batch, rows);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (attempt < 3 && code !== undefined && RETRYABLE.has(code)) continue;
        throw err;
      }
    }
  }

  // Submit to commit (queueing, group-commit window, transaction and fsync) of successful appends.
  const appendLatency = new LatencyHistogram();
  let weightOf: (org: string) => number = () => 1;
  const group = createGroupCommit<AppendRequest, AppendResult>({
    windowMs: options.groupCommitMs ?? 2,
    maxBatch: options.groupCommitMax ?? 500,
    concurrency: options.groupCommitConcurrency ?? 4,
    flush,
    partitionKey: (req) => req.org,
    splitMin: options.groupCommitSplitMin ?? 16,
    maxQueue: options.groupCommitQueue ?? 20_000,
    maxQueuePerKey: options.groupCommitQueuePerOrg ?? 5_000,
    maxSlotsPerKey: options.groupCommitSlotsPerOrg || undefined,
    settleSlice: (options.groupCommitAckSlice ?? 32) || undefined,
    windowPerKey: (options.groupCommitOrgWindow ?? 64) || undefined,
    activeMs: options.groupCommitActiveMs ?? 1000,
    weightOf: (org) => weightOf(org),
    overloaded: (scope, org) =>
      new EventStoreOverloadedError(
        scope === 'queue' ? 'the event store queue is full (ORGHUB_GROUP_COMMIT_QUEUE); nothing was recorded' : `org ${org} has too many appends queued (ORGHUB_GROUP_COMMIT_QUEUE_PER_ORG); nothing was recorded`,
        OVERLOADED_RETRY_MS,
      ),
    conflictKeys: (req) => req.events.flatMap((e) => (e.metadata.idempotencyKey ? [`${req.org}\u0000${e.metadata.idempotencyKey}`] : [])),
  });

  // --- readiness: its own one-connection pool, so a /ready flood never takes an append connection ---
  let opsPool: pg.Pool | undefined;
  async function ping(): Promise<void> {
    if (closed) throw new EventStoreUnavailableError('event store is closed');
    if (!opsPool) {
      opsPool = new pg.Pool({ connectionString, max: 1, connectionTimeoutMillis: options.connectTimeoutMs ?? 1500, query_timeout: 1500, idleTimeoutMillis: 0 });
      opsPool.on('error', (err) => onError(wrap(err, 'ping connection')));
    }
    await opsPool.query('SELECT 1').catch((err: unknown) => {
      throw wrap(err, 'ping');
    });
  }

  // --- reads ---
  function filterSql(f: ReadAllFilter, params: unknown[]): string {
    let sql = '';
    if (f.org !== undefined) {
      params.push(f.org);
      sql += ` AND org_id = $${params.length}`;
    }
    if (f.streamPrefix) {
      params.push(f.streamPrefix);
      sql += ` AND starts_with(stream_id, $${params.length})`;
    }
    if (f.types && f.types.length > 0) {
      params.push([...f.types]);
      sql += ` AND type = ANY($${params.length}::text[])`;
    }
    return sql;
  }

  /** Cross-org reads run as the projector role (BYPASSRLS, SELECT only); org reads go through RLS. */
  function readerRole(f: ReadAllFilter): string {
    return f.org !== undefined ? appRole : projectorRole;
  }

  async function readAll(opts: ReadAllOptions = {}): Promise<ReadAllBatch> {
    const after = opts.after === undefined ? START : parsePosition(opts.after);
    const batchSize = opts.batchSize ?? 500;
    const params: unknown[] = [after.tx.toString(), after.pos.toString()];
    const where = filterSql(opts, params);
    params.push(batchSize);
    // Only transactions older than every running one are read: a row that commits later can then
    // never land before the cursor (see DESIGN.md, "Why the event store is Postgres").
    const sql = `SELECT ${COLUMNS} FROM events
      WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
        AND (transaction_id, global_position) > ($1::xid8, $2::bigint)${where}
      ORDER BY events.transaction_id, events.global_position LIMIT $${params.length}`;
    const rows = await tx('readAll', readerRole(opts), opts.org, async (c) => (await c.query<EventRow>(sql, params)).rows);
    const events = rows.map(toRecorded);
    return { events, next: events.length ? events[events.length - 1].position : after, caughtUp: events.length < batchSize };
  }

  /**
   * The cursor for `from: 'end'`: (xmax of the current snapshot, 0). Every transaction that starts
   * later has a transaction id at or above it, so its events are delivered; everything committed
   * so far is below it. Appends in flight at this moment (ids between xmin and xmax) are skipped.
   */
  async function endPosition(): Promise<Position> {
    const { rows } = await pool.query<{ tx: string }>('SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS tx').catch((err: unknown) => {
      throw wrap(err, 'subscribe');
    });
    return { tx: BigInt(rows[0].tx), pos: 0n };
  }

  // --- LISTEN for subscriptions: one connection per store, opened on the first subscribe ---
  const wakers = new Set<() => void>();
  const subscriptions = new Set<Subscription>();
  let listener: pg.Client | undefined;
  let listenerRetry: NodeJS.Timeout | undefined;
  function startListener(): void {
    if (listener || closed || wakers.size === 0) return;
    const client = new pg.Client({ connectionString, connectionTimeoutMillis: options.connectTimeoutMs ?? 1500, keepAlive: true });
    listener = client;
    const restart = (err: unknown) => {
      if (listener !== client) return;
      listener = undefined;
      onError(wrap(err, 'listen'));
      client.end().catch(() => {});
      // Polling goes on meanwhile; the listener only cuts latency.
      listenerRetry = setTimeout(startListener, 1000);
    };
    client.on('error', restart);
    client.on('notification', () => {
      for (const w of wakers) w();
    });
    client.connect().then(() => client.query(`LISTEN ${CHANNEL}`)).catch(restart);
  }

  return {
    async appendToStream(org: string, stream: string, events: NewEvent[], opts: AppendOptions = {}): Promise<AppendResult> {
      const expected = opts.expectedVersion ?? ANY;
      checkExpected(expected);
      const prepared = prepareEvents(org, stream, events);
      if (closed) throw new EventStoreUnavailableError('event store is closed');
      const t0 = performance.now();
      const result = await group.submit({ org, stream, expected, events: prepared });
      appendLatency.observe((performance.now() - t0) / 1000);
      return result;
    },

    async eraseOrg(org: string, actor: string): Promise<number> {
      if (closed) throw new EventStoreUnavailableError('event store is closed');
      // The function runs as its owner (SECURITY DEFINER) with app.org_id set to the org; this role may only call it.
      return tx('eraseOrg', appRole, org, async (c) => Number((await c.query<{ n: string }>('SELECT orghub_offboard_org($1, $2)::text AS n', [org, actor])).rows[0]!.n));
    },

    weighOrgs(fn: (org: string) => number) {
      weightOf = fn;
    },

    stats() {
      const t = group.totals;
      return { appends: t.items, batches: t.batches, failedBatches: t.failedBatches, pending: group.pending, overloaded: t.overloaded, dataErrors, appendLatency: appendLatency.snapshot() };
    },

    async readStream(org: string, stream: string, opts: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
      const sql = `SELECT ${COLUMNS} FROM events WHERE org_id = $1 AND stream_id = $2 AND stream_position >= $3
        ORDER BY events.stream_position LIMIT $4`;
      const params = [org, stream, String(opts.from ?? 0), opts.maxCount ?? 1000];
      const rows = await tx('readStream', appRole, org, async (c) => (await c.query<EventRow>(sql, params)).rows);
      return rows.map(toRecorded);
    },

    readAll,

    ping,

    subscribe(opts: SubscribeOptions): Subscription {
      const filter: ReadAllFilter = { org: opts.org, streamPrefix: opts.streamPrefix, types: opts.types };
      const sub = pollingSubscription({
        start: async () => (opts.from === 'end' ? endPosition() : opts.from === 'start' ? START : parsePosition(opts.from)),
        read: (after) => readAll({ ...filter, after, batchSize: opts.batchSize ?? 500 }),
        onWake: (wake) => {
          wakers.add(wake);
          startListener();
          return () => wakers.delete(wake);
        },
        handler: opts.handler,
        onError: opts.onError ?? onError,
        pollMs: options.pollMs ?? 200,
      });
      subscriptions.add(sub);
      return {
        ready: sub.ready,
        stop: async () => {
          subscriptions.delete(sub);
          await sub.stop();
        },
      };
    },

    async close(): Promise<void> {
      if (closed) return;
      await Promise.all([...subscriptions].map((s) => s.stop()));
      subscriptions.clear();
      await group.drain();
      closed = true;
      if (listenerRetry) clearTimeout(listenerRetry);
      const l = listener;
      listener = undefined;
      await l?.end().catch(() => {});
      await pool.end();
      await opsPool?.end();
    },
  };
}
