import type { Projection } from '../projection.ts';
import { unnestInsert, type Column } from '../sql.ts';
import { foldOrgs, type OrgSpan } from './orgsFold.ts';

const COLUMNS: Column<OrgSpan>[] = [
  { name: 'org_id', type: 'text', get: (r) => r.org_id },
  { name: 'id', type: 'text', get: (r) => r.org_id },
  { name: 'first_event_at', type: 'timestamptz', get: (r) => r.first_event_at },
  { name: 'last_event_at', type: 'timestamptz', get: (r) => r.last_event_at },
];

/** `orgs`: one row per org seen in the log; least/greatest keep it idempotent. Settings are left alone. */
export const orgsProjection: Projection = {
  name: 'orgs',
  version: 1,
  tables: ['orgs'],
  canHandle: () => true,
  async handle(events, tx) {
    const rows = foldOrgs(events);
    if (rows.length === 0) return [];
    const { sql, params } = unnestInsert(`${tx.table('orgs')} AS o`, COLUMNS, rows,
      'ON CONFLICT (org_id, id) DO UPDATE SET first_event_at = least(o.first_event_at, EXCLUDED.first_event_at), last_event_at = greatest(o.last_event_at, EXCLUDED.last_event_at)');
    await tx.query(sql, params);
    return [];
  },
};
