import pg from 'pg';
import { START, type Position, type ReadAllBatch, type RecordedEvent } from '../hub/eventstore/eventStore.ts';
import { DEFAULT_PROJECTOR_ROLE, assertRoleName } from '../hub/eventstore/roles.ts';
import { RAW_DATA, type WithRawData } from './rawData.ts';
import type { BatchReader } from './sharedReader.ts';

/**
 * The projector's read of the global order: the same statement and visibility rule as
 * `createPostgresEventStore().readAll` (rows with `transaction_id < pg_snapshot_xmin(...)`, ordered
 * by `(transaction_id, global_position)`, strictly after the cursor: docs/eventstore.md), on one
 * dedicated connection that switched to the cross-org reader role once, in one round trip per
 * batch instead of three, with the time formatted by the server (ISO, milliseconds, as
 * `toISOString` gives it) instead of parsed into a Date and back. Catching up from zero, reading
 * was the projector's largest cost. `readers.int.test.ts` checks that both readers return the
 * same events in the same order.
 */
export interface PgEventReader {
  read: BatchReader;
  close(): Promise<void>;
}

const SQL = `SELECT org_id, stream_id, stream_position::text AS sp, global_position::text AS gp, transaction_id::text AS tx, event_id::text AS id,
    type, schema_version, data::text AS data, metadata::text AS metadata,
    to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at
  FROM events
  WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    AND (transaction_id, global_position) > ($1::xid8, $2::bigint)
  ORDER BY events.transaction_id, events.global_position LIMIT $3`;

const asText = { getTypeParser: () => (v: string) => v };

interface Row { org_id: string; stream_id: string; sp: string; gp: string; tx: string; id: string; type: string; schema_version: string; data: string; metadata: string; at: string }

export function createPgEventReader(opts: { databaseUrl: string; readerRole?: string; queryTimeoutMs?: number }): PgEventReader {
  const role = assertRoleName(opts.readerRole ?? DEFAULT_PROJECTOR_ROLE);
  let client: Promise<pg.Client> | undefined;
  const connect = (): Promise<pg.Client> => {
    const c = new pg.Client({ connectionString: opts.databaseUrl, application_name: `orghub-projector:${process.pid}:read`, keepAlive: true, query_timeout: opts.queryTimeoutMs ?? 60_000 });
    const p = c.connect().then(async () => {
      await c.query(`SET ROLE ${role}`);
      return c;
    });
    c.on('error', () => {
      if (client === p) client = undefined;
    });
    p.catch(() => {
      if (client === p) client = undefined;
    });
    return p;
  };
  return {
    async read(after: Position = START, batchSize: number): Promise<ReadAllBatch> {
      client ??= connect();
      const p = client;
      let c: pg.Client;
      try {
        c = await p;
      } catch (err) {
        if (client === p) client = undefined;
        throw err;
      }
      let rows: Row[];
      try {
        rows = (await c.query<Row>({ text: SQL, values: [after.tx.toString(), after.pos.toString(), batchSize], types: asText })).rows;
      } catch (err) {
        if (client === p) client = undefined;
        c.end().catch(() => {});
        throw err;
      }
      const events: RecordedEvent[] = new Array(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i];
        const pos = BigInt(r.gp);
        const e: WithRawData = {
          id: r.id, org: r.org_id, stream: r.stream_id, type: r.type, schemaVersion: Number(r.schema_version),
          data: JSON.parse(r.data), metadata: JSON.parse(r.metadata), recordedAt: r.at,
          streamPosition: BigInt(r.sp), globalPosition: pos, position: { tx: BigInt(r.tx), pos },
          [RAW_DATA]: r.data,
        };
        events[i] = e;
      }
      return { events, next: events.length ? events[events.length - 1].position : after, caughtUp: events.length < batchSize };
    },
    async close() {
      const p = client;
      client = undefined;
      if (p) await p.then((c) => c.end()).catch(() => {});
    },
  };
}
