import type { Projection } from '../projection.ts';
import { arrayLiteral, unnestInsert, type Column } from '../sql.ts';
import { foldOrgs, type OrgSpan } from './orgsFold.ts';

const COLUMNS: Column<OrgSpan>[] = [
  { name: 'org_id', type: 'text', get: (r) => r.org_id },
  { name: 'id', type: 'text', get: (r) => r.org_id },
  { name: 'first_event_at', type: 'timestamptz', get: (r) => r.first_event_at },
  { name: 'last_event_at', type: 'timestamptz', get: (r) => r.last_event_at },
];

/** A column set from the patch when its key is present, else kept (`->>` of JSON null is SQL NULL). */
const set = (col: string, expr: string) => `${col} = CASE WHEN u.p ? '${col}' THEN ${expr} ELSE o.${col} END`;

/**
 * `orgs`: one row per org seen in the log; least/greatest keep the span idempotent. Lifecycle
 * patches (rare: only platform operators make them) go in one more statement per batch that has
 * any, after the span upsert has made sure the row exists; `lifecycle_position` makes a patch
 * apply only over an older state, so a batch applied twice changes nothing.
 */
export const orgsProjection: Projection = {
  name: 'orgs',
  version: 2,
  tables: ['orgs'],
  canHandle: () => true,
  async handle(events, tx) {
    const { spans, lifecycle, rejected } = foldOrgs(events);
    if (spans.length === 0) return rejected;
    const { sql, params } = unnestInsert(`${tx.table('orgs')} AS o`, COLUMNS, spans,
      'ON CONFLICT (org_id, id) DO UPDATE SET first_event_at = least(o.first_event_at, EXCLUDED.first_event_at), last_event_at = greatest(o.last_event_at, EXCLUDED.last_event_at)');
    await tx.query(sql, params);
    if (lifecycle.length === 0) return rejected;
    await tx.query(
      `UPDATE ${tx.table('orgs')} AS o SET
         ${set('status', `u.p->>'status'`)},
         ${set('tier', `u.p->>'tier'`)},
         ${set('settings', `u.p->'settings'`)},
         ${set('limits', `u.p->'limits'`)},
         ${set('audit_retention_days', `(u.p->>'audit_retention_days')::int`)},
         ${set('created_at', `(u.p->>'created_at')::timestamptz`)},
         ${set('suspended_at', `(u.p->>'suspended_at')::timestamptz`)},
         ${set('suspend_reason', `u.p->>'suspend_reason'`)},
         lifecycle_position = u.pos
       FROM (SELECT x.org, x.pos, x.p::jsonb AS p FROM unnest($1::text[], $2::bigint[], $3::text[]) AS x(org, pos, p)) AS u
       WHERE o.org_id = u.org AND o.id = u.org AND (o.lifecycle_position IS NULL OR o.lifecycle_position < u.pos)`,
      [arrayLiteral(lifecycle.map((l) => l.org_id)), arrayLiteral(lifecycle.map((l) => l.position)), arrayLiteral(lifecycle.map((l) => JSON.stringify(l.patch)))],
    );
    return rejected;
  },
};
