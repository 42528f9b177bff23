import type { Projection } from '../projection.ts';
import { arrayLiteral, unnestSource, type Column } from '../sql.ts';
import { foldSessions, isSessionEvent, type SessionPatch } from './sessionsFold.ts';

const COLUMNS: Column<SessionPatch>[] = [
  { name: 'org_id', type: 'text', get: (r) => r.org_id },
  { name: 'id', type: 'text', get: (r) => r.id },
  { name: 'actor', type: 'text', get: (r) => r.actor },
  { name: 'device_id', type: 'text', get: (r) => r.device_id },
  { name: 'transport', type: 'text', get: (r) => r.transport },
  { name: 'client_id', type: 'text', get: (r) => r.client_id },
  { name: 'node', type: 'text', get: (r) => r.node },
  { name: 'connected_at', type: 'timestamptz', get: (r) => r.connected_at },
  { name: 'disconnected_at', type: 'timestamptz', get: (r) => r.disconnected_at },
  { name: 'duration_ms', type: 'bigint', get: (r) => r.duration_ms },
  { name: 'reason', type: 'text', get: (r) => r.reason },
  { name: 'close_code', type: 'int', get: (r) => r.close_code },
];

const MERGED = COLUMNS.filter((c) => c.name !== 'org_id' && c.name !== 'id' && c.name !== 'actor')
  .map((c) => `${c.name} = COALESCE(EXCLUDED.${c.name}, t.${c.name})`)
  .join(', ');

/**
 * `sessions` and `devices`, in two statements per batch, both set-based and neither scanning a
 * device's history:
 * 1. the sessions upsert, in a statement that also reads the same rows as they were before it
 *    (a CTE sees the statement's snapshot) and returns, per device the batch touches, the
 *    earliest connect and latest connect or disconnect of its touched sessions and the change in
 *    its number of open sessions (open after minus open before: exact, whatever the batches);
 * 2. the devices upsert from those: first_seen = least, last_seen = greatest, open_sessions +=
 *    the change, online = open_sessions > 0, and two index lookups of LIMIT 1 for the latest open
 *    session (current_session, through the partial index `sessions_org_device_open`) and the
 *    transport/client_id of the latest session.
 * Every column is thus a function of the sessions rows and the order of the log, never of how it
 * was cut into batches, so a rebuild equals the incrementally built tables (replay.int.test.ts,
 * sessions.int.test.ts). (It replaced a recomputation of each touched device from all its open
 * sessions after every batch, which grew with the number of open sessions.)
 */
export const sessionsProjection: Projection = {
  name: 'sessions',
  version: 1,
  tables: ['sessions', 'devices'],
  canHandle: isSessionEvent,
  async handle(events, tx) {
    const { rows, rejected } = foldSessions(events);
    if (rows.length === 0) return rejected;
    const sessions = tx.table('sessions');
    const devices = tx.table('devices');
    const src = unnestSource(COLUMNS, rows);
    const { rows: touched } = await tx.query(
      `WITH u AS MATERIALIZED (SELECT ${src.select} FROM ${src.from}),
       before AS (SELECT s.org_id, s.device_id FROM ${sessions} s JOIN u ON s.org_id = u.c0 AND s.id = u.c1
                  WHERE s.device_id IS NOT NULL AND s.disconnected_at IS NULL),
       after AS (INSERT INTO ${sessions} AS t (${COLUMNS.map((c) => c.name).join(', ')}) SELECT * FROM u
                 ON CONFLICT (org_id, id) DO UPDATE SET ${MERGED}
                 RETURNING t.org_id, t.device_id, t.connected_at, t.disconnected_at)
       SELECT org_id, device_id, min(first)::text AS first, max(last)::text AS last, sum(open)::int AS delta FROM (
         SELECT org_id, device_id, connected_at AS first, greatest(connected_at, disconnected_at) AS last, (disconnected_at IS NULL)::int AS open
           FROM after WHERE device_id IS NOT NULL
         UNION ALL SELECT org_id, device_id, NULL, NULL, -1 FROM before) x
       GROUP BY org_id, device_id`,
      src.params,
    );
    if (touched.length === 0) return rejected;
    const col = (k: string) => arrayLiteral(touched.map((t: Record<string, string | number | null>) => t[k]));
    await tx.query(
      `INSERT INTO ${devices} AS d (org_id, id, first_seen, last_seen, online, open_sessions, current_session, transport, client_id)
       SELECT k.org_id, k.id, k.first, k.last, k.delta > 0, k.delta, c.id, l.transport, l.client_id
       FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[]) AS k(org_id, id, first, last, delta)
       LEFT JOIN LATERAL (SELECT id FROM ${sessions} WHERE org_id = k.org_id AND device_id = k.id AND disconnected_at IS NULL
                          ORDER BY connected_at DESC, id DESC LIMIT 1) c ON true
       LEFT JOIN LATERAL (SELECT transport, client_id FROM ${sessions} WHERE org_id = k.org_id AND device_id = k.id AND connected_at IS NOT NULL
                          ORDER BY connected_at DESC, id DESC LIMIT 1) l ON true
       ON CONFLICT (org_id, id) DO UPDATE SET first_seen = least(d.first_seen, EXCLUDED.first_seen), last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
         open_sessions = d.open_sessions + EXCLUDED.open_sessions, online = d.open_sessions + EXCLUDED.open_sessions > 0,
         current_session = EXCLUDED.current_session, transport = EXCLUDED.transport, client_id = EXCLUDED.client_id`,
      [col('org_id'), col('device_id'), col('first'), col('last'), col('delta')],
    );
    return rejected;
  },
};
