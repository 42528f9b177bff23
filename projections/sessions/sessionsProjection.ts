import type { Projection } from '../projection.ts';
import { arrayLiteral, unnestInsert, type Column } from '../sql.ts';
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
 * `sessions` and `devices`. After every batch, each device it touches is updated in one set-based
 * statement from index lookups on its sessions (earliest connect, open sessions through the
 * partial index `sessions_org_device_open`, latest session), never incremented, so it is
 * idempotent and equal after a rebuild: first_seen = earliest connect, last_seen = latest connect
 * or disconnect (greatest of the stored value and the batch's sessions), online = some session
 * still open, current_session = the latest open session (NULL offline), transport/client_id =
 * those of its latest session.
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
    const ins = unnestInsert(`${sessions} AS t`, COLUMNS, rows, `ON CONFLICT (org_id, id) DO UPDATE SET ${MERGED}`);
    await tx.query(ins.sql, ins.params);
    await tx.query(
      `WITH touched AS (
         SELECT s.org_id, s.device_id, max(greatest(s.connected_at, s.disconnected_at)) AS seen FROM ${sessions} s
         JOIN unnest($1::text[], $2::text[]) AS k(org_id, id) ON s.org_id = k.org_id AND s.id = k.id
         WHERE s.device_id IS NOT NULL GROUP BY s.org_id, s.device_id)
       INSERT INTO ${devices} AS d (org_id, id, first_seen, last_seen, online, open_sessions, current_session, transport, client_id)
       SELECT t.org_id, t.device_id, f.connected_at, t.seen, o.n > 0, o.n, o.cur, l.transport, l.client_id
       FROM touched t
       CROSS JOIN LATERAL (SELECT connected_at FROM ${sessions} WHERE org_id = t.org_id AND device_id = t.device_id AND connected_at IS NOT NULL
                           ORDER BY connected_at LIMIT 1) f
       CROSS JOIN LATERAL (SELECT count(*)::int AS n, (array_agg(id ORDER BY connected_at DESC, id DESC))[1] AS cur FROM ${sessions}
                           WHERE org_id = t.org_id AND device_id = t.device_id AND disconnected_at IS NULL) o
       CROSS JOIN LATERAL (SELECT transport, client_id FROM ${sessions} WHERE org_id = t.org_id AND device_id = t.device_id AND connected_at IS NOT NULL
                           ORDER BY connected_at DESC, id DESC LIMIT 1) l
       ON CONFLICT (org_id, id) DO UPDATE SET first_seen = EXCLUDED.first_seen, last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
         online = EXCLUDED.online, open_sessions = EXCLUDED.open_sessions, current_session = EXCLUDED.current_session,
         transport = EXCLUDED.transport, client_id = EXCLUDED.client_id`,
      [arrayLiteral(rows.map((r) => r.org_id)), arrayLiteral(rows.map((r) => r.id))],
    );
    return rejected;
  },
};
