import type { Projection } from '../projection.ts';
import { insertNew, type Column } from '../sql.ts';
import { foldAudit, isAuditEvent, monthOf, type AuditRow } from './auditFold.ts';

const COLUMNS: Column<AuditRow>[] = [
  { name: 'org_id', type: 'text', get: (r) => r.org_id },
  { name: 'id', type: 'uuid', get: (r) => r.id },
  { name: 'recorded_at', type: 'timestamptz', get: (r) => r.recorded_at },
  { name: 'global_position', type: 'bigint', get: (r) => r.global_position },
  { name: 'type', type: 'text', get: (r) => r.type },
  { name: 'actor', type: 'text', get: (r) => r.actor },
  { name: 'session', type: 'text', get: (r) => r.session },
  { name: 'topic', type: 'text', get: (r) => r.topic },
  { name: 'outcome', type: 'text', get: (r) => r.outcome },
  { name: 'correlation_id', type: 'text', get: (r) => r.correlation_id },
  { name: 'node', type: 'text', get: (r) => r.node },
  { name: 'data', type: 'jsonb', get: (r) => r.data },
];

/** `audit_log`: one row per audit event, in month partitions; rows never change once written. */
export const auditLogProjection: Projection = {
  name: 'audit_log',
  version: 1,
  tables: ['audit_log'],
  canHandle: isAuditEvent,
  // One row per event, insert-only: batches can be written two at a time (runner.ts).
  independentBatches: true,
  async handle(events, tx) {
    const { rows, rejected } = foldAudit(events);
    if (rows.length === 0) return rejected;
    for (const month of new Set(rows.map((r) => monthOf(r.recorded_at)))) await tx.ensureAuditPartition(month);
    await insertNew(tx, tx.table('audit_log'), COLUMNS, rows, 'ON CONFLICT DO NOTHING');
    return rejected;
  },
};
