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
 * `sessions` and `devices`. A device row is recomputed from its sessions after every batch that
 * touches one of them (set-based, one statement), never incremented, so it is idempotent and
 * equal after a rebuild: first_seen = earliest connect, last_seen = latest connect or disconnect,
 * online = some session still open, current_session = the latest open session (NULL offline),
 * transport/client_id = those of its latest session.
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
         SELECT DISTINCT s.org_id, s.device_id FROM ${sessions} s
         JOIN unnest($1::text[], $2::text[]) AS k(org_id, id) ON s.org_id = k.org_id AND s.id = k.id
         WHERE s.device_id IS NOT NULL),
       per AS (
         SELECT s.*, row_number() OVER w AS latest,
                row_number() OVER (PARTITION BY s.org_id, s.device_id ORDER BY (s.disconnected_at IS NULL) DESC, s.connected_at DESC NULLS LAST, s.id DESC) AS latest_open
         FROM ${sessions} s JOIN touched USING (org_id, device_id)
         WINDOW w AS (PARTITION BY s.org_id, s.device_id ORDER BY s.connected_at DESC NULLS LAST, s.id DESC))
       INSERT INTO ${devices} AS d (org_id, id, first_seen, last_seen, online, open_sessions, current_session, transport, client_id)
       SELECT org_id, device_id,
              min(COALESCE(connected_at, disconnected_at)),
              greatest(max(connected_at), max(disconnected_at)),
              count(*) FILTER (WHERE disconnected_at IS NULL) > 0,
              count(*) FILTER (WHERE disconnected_at IS NULL),
              max(id) FILTER (WHERE latest_open = 1 AND disconnected_at IS NULL),
              max(transport) FILTER (WHERE latest = 1),
              max(client_id) FILTER (WHERE latest = 1)
       FROM per GROUP BY org_id, device_id
       ON CONFLICT (org_id, id) DO UPDATE SET first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen, online = EXCLUDED.online,
         open_sessions = EXCLUDED.open_sessions, current_session = EXCLUDED.current_session, transport = EXCLUDED.transport, client_id = EXCLUDED.client_id`,
      [arrayLiteral(rows.map((r) => r.org_id)), arrayLiteral(rows.map((r) => r.id))],
    );
    return rejected;
  },
};
