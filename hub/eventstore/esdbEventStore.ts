import {
  EventStoreDBClient, jsonEvent, streamNameFilter, excludeSystemEvents, StreamNotFoundError, WrongExpectedVersionError,
  UnavailableError, DeadlineExceededError, CancelledError,
  START as ES_START, END as ES_END, FORWARDS,
  type AppendExpectedRevision, type ReadPosition, type Filter, type AllStreamRecordedEvent, type JSONRecordedEvent,
} from '@eventstore/db-client';
import { v5 as uuidv5 } from 'uuid';
import type {
  EventStore, AppendResult, NewEvent, AppendOptions, ReadStreamOptions, ReadAllOptions, ReadAllBatch,
  RecordedEvent, SubscribeOptions, Subscription, Position, ExpectedVersion, EventMetadata,
} from './eventStore.ts';
import { ANY, NO_STREAM, STREAM_EXISTS, START, parsePosition, comparePosition } from './eventStore.ts';
import { prepareEvents, type PreparedEvent } from './envelope.ts';
import { ConcurrencyError, EventStoreUnavailableError, InvalidEventError } from './errors.ts';

/**
 * EventStoreDB adapter (optional; EVENTSTORE_URL). One EventStoreDB stream per org and stream,
 * named `<escaped org>-<stream>`; the org is escaped so it never contains '-' and its prefix
 * `<escaped org>-` selects exactly that org in `$all`.
 *
 * Idempotency: an event with an idempotency key gets the EventStoreDB event id UUIDv5(org, key),
 * and EventStoreDB drops a repeated id. Its own UUIDv7 travels in the metadata. EventStoreDB only
 * recognises a repeat within the same stream (and, with `any`, among its recent events), which is
 * where command retries land; see docs/eventstore.md.
 */
export interface EsdbEventStoreOptions {
  /** e.g. esdb://127.0.0.1:2113?tls=false */
  connectionString: string;
  /** Per-call deadline; past it the call fails with `unavailable`. Default 2000 ms. */
  deadlineMs?: number;
  /** Delay before a failed subscription or handler is retried. Default 500 ms. */
  retryMs?: number;
  onError?: (err: unknown) => void;
  /** A client built elsewhere (unit tests drive subscribe's readiness with a stand-in). */
  client?: EventStoreDBClient;
}

/** Namespace for the UUIDv5 event ids derived from (org, idempotency key). Fixed forever. */
export const IDEMPOTENCY_NAMESPACE = '6f0d4b52-8a39-4f6e-9d59-0c1d8f3b7a21';

/** Stored as the EventStoreDB metadata of each event. */
interface StoredMetadata {
  id: string;
  schemaVersion: number;
  meta: EventMetadata;
  $correlationId?: string;
  $causationId?: string;
}

export function escapeOrg(org: string): string {
  return org.replaceAll('%', '%25').replaceAll('-', '%2D');
}

export function esdbStreamName(org: string, stream: string): string {
  return `${escapeOrg(org)}-${stream}`;
}

/**
 * Inverse of esdbStreamName; undefined for streams that are not orghub's: `$`-system streams,
 * names without `-`, and foreign names whose prefix is not exactly what escapeOrg produces (a
 * malformed `%` escape such as `50%-off`, or `%41` for `A`), so a foreign stream can neither throw
 * out of a read nor pass itself off as another org's.
 */
export function parseEsdbStreamName(name: string): { org: string; stream: string } | undefined {
  const dash = name.indexOf('-');
  if (dash <= 0 || name.startsWith('$')) return undefined;
  const prefix = name.slice(0, dash);
  let org: string;
  try {
    org = decodeURIComponent(prefix);
  } catch {
    return undefined;
  }
  if (escapeOrg(org) !== prefix) return undefined;
  return { org, stream: name.slice(dash + 1) };
}

/**
 * The client's expected revision for ours. Like the Postgres adapter, anything but the three
 * constants or an integer >= -1 (-1 meaning no stream) is an InvalidEventError, thrown before
 * anything is sent (BigInt would otherwise throw a RangeError for 1.5, and -2 would reach the server).
 */
export function toExpectedRevision(expected: ExpectedVersion): AppendExpectedRevision {
  if (expected === ANY) return 'any';
  if (expected === NO_STREAM) return 'no_stream';
  if (expected === STREAM_EXISTS) return 'stream_exists';
  const ok = typeof expected === 'bigint' || (typeof expected === 'number' && Number.isSafeInteger(expected));
  if (!ok || BigInt(expected) < -1n) throw new InvalidEventError(`invalid expectedVersion ${String(expected)}`);
  const n = BigInt(expected);
  return n === -1n ? 'no_stream' : n;
}

export function esdbEventId(org: string, e: PreparedEvent): string {
  const key = e.metadata.idempotencyKey;
  return key ? uuidv5(`${org}\n${key}`, IDEMPOTENCY_NAMESPACE) : e.id;
}

function toRecorded(e: JSONRecordedEvent | AllStreamRecordedEvent): RecordedEvent | undefined {
  const names = parseEsdbStreamName(e.streamId);
  if (!names || !e.isJson) return undefined;
  const m = (e.metadata ?? {}) as Partial<StoredMetadata>;
  const p = e.position ?? { commit: 0n, prepare: 0n };
  return {
    id: m.id ?? e.id,
    org: names.org,
    stream: names.stream,
    type: e.type,
    schemaVersion: m.schemaVersion ?? 1,
    data: e.data,
    metadata: m.meta ?? { actor: 'unknown' },
    recordedAt: e.created.toISOString(),
    streamPosition: e.revision,
    globalPosition: p.commit,
    position: { tx: p.commit, pos: p.prepare },
  };
}

function wrap(err: unknown): unknown {
  if (err instanceof UnavailableError || err instanceof DeadlineExceededError || err instanceof CancelledError) {
    return new EventStoreUnavailableError(`EventStoreDB unavailable: ${err.message}`, { cause: err });
  }
  return err;
}

export function createEsdbEventStore(options: EsdbEventStoreOptions): EventStore {
  const client = options.client ?? EventStoreDBClient.connectionString(options.connectionString);
  const deadline = options.deadlineMs ?? 2000;
  const retryMs = options.retryMs ?? 500;
  const onError = options.onError ?? (() => {});
  const subscriptions = new Set<Subscription>();

  function filterFor(opts: { org?: string; streamPrefix?: string }): Filter {
    if (opts.org === undefined) return excludeSystemEvents();
    return streamNameFilter({ prefixes: [esdbStreamName(opts.org, opts.streamPrefix ?? '')] });
  }

  function matches(e: RecordedEvent, opts: { org?: string; streamPrefix?: string; types?: readonly string[] }): boolean {
    if (opts.org !== undefined && e.org !== opts.org) return false;
    if (opts.streamPrefix && !e.stream.startsWith(opts.streamPrefix)) return false;
    if (opts.types && opts.types.length > 0 && !opts.types.includes(e.type)) return false;
    return true;
  }

  async function readStream(org: string, stream: string, opts: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    const out: RecordedEvent[] = [];
    try {
      for await (const r of client.readStream(esdbStreamName(org, stream), {
        fromRevision: BigInt(opts.from ?? 0),
        maxCount: opts.maxCount ?? 1000,
        direction: FORWARDS,
        deadline,
      })) {
        const e = r.event && toRecorded(r.event as JSONRecordedEvent);
        if (e) out.push(e);
      }
    } catch (err) {
      if (err instanceof StreamNotFoundError) return [];
      throw wrap(err);
    }
    return out;
  }

  return {
    async appendToStream(org: string, stream: string, events: NewEvent[], opts: AppendOptions = {}): Promise<AppendResult> {
      const expected = opts.expectedVersion ?? ANY;
      const expectedRevision = toExpectedRevision(expected);
      const prepared = prepareEvents(org, stream, events);
      const name = esdbStreamName(org, stream);
      const data = prepared.map((e) =>
        jsonEvent({
          id: esdbEventId(org, e),
          type: e.type,
          data: e.data as never,
          metadata: {
            id: e.id,
            schemaVersion: e.schemaVersion,
            meta: e.metadata,
            ...(e.metadata.correlationId ? { $correlationId: e.metadata.correlationId } : {}),
            ...(e.metadata.causationId ? { $causationId: e.metadata.causationId } : {}),
          } satisfies StoredMetadata,
        }),
      );
      let next: bigint;
      try {
        const res = await client.appendToStream(name, data, { expectedRevision, deadline });
        next = res.nextExpectedRevision;
      } catch (err) {
        if (err instanceof WrongExpectedVersionError) {
          const actual = typeof err.actualVersion === 'bigint' ? err.actualVersion : err.actualVersion === 'no_stream' ? -1n : undefined;
          throw new ConcurrencyError(stream, String(expected), actual, { cause: err });
        }
        throw wrap(err);
      }
      // EventStoreDB reports a deduplicated write as a success: read the events back to learn their
      // global positions and whether they are ours (our UUIDv7s) or an earlier append's.
      const n = BigInt(prepared.length);
      const written = await readStream(org, stream, { from: next - n + 1n, maxCount: prepared.length });
      const duplicate = written.length > 0 && written[written.length - 1].id !== prepared[prepared.length - 1].id;
      return {
        nextExpectedVersion: next,
        positions: written.map((e) => e.globalPosition),
        ids: written.map((e) => e.id),
        duplicate,
      };
    },

    readStream,

    async readAll(opts: ReadAllOptions = {}): Promise<ReadAllBatch> {
      // The client's $all read has no server-side filter: scan forward and filter here, advancing
      // the cursor over what was scanned so that sparse filters still make progress.
      const after = opts.after === undefined ? START : parsePosition(opts.after);
      const batchSize = opts.batchSize ?? 500;
      const events: RecordedEvent[] = [];
      let next = after;
      const fromPosition: ReadPosition = after.tx === 0n && after.pos === 0n ? ES_START : { commit: after.tx, prepare: after.pos };
      let scanned = 0;
      try {
        for await (const r of client.readAll({ fromPosition, maxCount: batchSize * 4, direction: FORWARDS, deadline })) {
          scanned++;
          const ev = r.event;
          if (!ev) continue;
          const pos: Position = { tx: ev.position.commit, pos: ev.position.prepare };
          if (comparePosition(pos, after) <= 0) continue; // $all reads include their start position
          next = pos;
          const e = toRecorded(ev);
          if (e && matches(e, opts)) {
            events.push(e);
            if (events.length >= batchSize) break;
          }
        }
      } catch (err) {
        throw wrap(err);
      }
      return { events, next, caughtUp: events.length < batchSize && scanned < batchSize * 4 };
    },

    subscribe(opts: SubscribeOptions): Subscription {
      let stopped = false;
      let current: { unsubscribe(): Promise<void> } | undefined;
      let resolveReady!: () => void;
      const ready = new Promise<void>((r) => (resolveReady = r));
      const report = opts.onError ?? onError;
      const loop = (async () => {
        let from: ReadPosition =
          opts.from === 'start' ? ES_START : opts.from === 'end' ? ES_END : (() => {
            const p = parsePosition(opts.from);
            return p.tx === 0n && p.pos === 0n ? ES_START : { commit: p.tx, prepare: p.pos };
          })();
        while (!stopped) {
          const sub = client.subscribeToAll({ fromPosition: from, filter: filterFor(opts) });
          current = sub;
          // Ready only once the server has confirmed the subscription: before that an append
          // could land before the subscription exists and, with from 'end', never be seen.
          sub.once('confirmation', resolveReady);
          try {
            for await (const r of sub) {
              if (stopped) break;
              const e = r.event && toRecorded(r.event);
              if (!e) continue;
              if (matches(e, opts)) {
                for (;;) {
                  try {
                    await opts.handler([e], { position: e.position });
                    break;
                  } catch (err) {
                    report(err);
                    if (stopped) return;
                    await new Promise((res) => setTimeout(res, retryMs));
                  }
                }
              }
              from = { commit: e.position.tx, prepare: e.position.pos };
            }
          } catch (err) {
            if (!stopped) report(wrap(err));
          }
          if (!stopped) await new Promise((res) => setTimeout(res, retryMs));
        }
      })();
      const handle: Subscription = {
        ready,
        async stop() {
          stopped = true;
          subscriptions.delete(handle);
          resolveReady();
          await current?.unsubscribe().catch(() => {});
          await loop;
        },
      };
      subscriptions.add(handle);
      return handle;
    },

    async close(): Promise<void> {
      await Promise.all([...subscriptions].map((s) => s.stop()));
      await client.dispose();
    },
  };
}
