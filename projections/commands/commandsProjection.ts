import type { Projection } from '../projection.ts';
import { insertNew, type Column } from '../sql.ts';
import { foldCommands, isCommandEvent, type CommandRow } from './commandsFold.ts';

const COLUMNS: Column<CommandRow>[] = [
  { name: 'org_id', type: 'text', get: (r) => r.org_id },
  { name: 'id', type: 'uuid', get: (r) => r.id },
  { name: 'device_id', type: 'text', get: (r) => r.device_id },
  { name: 'topic', type: 'text', get: (r) => r.topic },
  { name: 'type', type: 'text', get: (r) => r.type },
  { name: 'data', type: 'jsonb', get: (r) => r.data },
  { name: 'status', type: 'text', get: (r) => r.status },
  { name: 'issued_by', type: 'text', get: (r) => r.issued_by },
  { name: 'issued_at', type: 'timestamptz', get: (r) => r.issued_at },
  { name: 'updated_at', type: 'timestamptz', get: (r) => r.updated_at },
  { name: 'global_position', type: 'bigint', get: (r) => r.global_position },
  { name: 'idempotency_key', type: 'text', get: (r) => r.idempotency_key },
];

/**
 * `device_commands`: one row per recorded command (`issued`). DO NOTHING on a known id, so a
 * replayed batch never resets a status a later fold has moved on.
 */
export const deviceCommandsProjection: Projection = {
  name: 'device_commands',
  version: 1,
  tables: ['device_commands'],
  canHandle: isCommandEvent,
  async handle(events, tx) {
    const { rows, rejected } = foldCommands(events);
    if (rows.length === 0) return rejected;
    await insertNew(tx, tx.table('device_commands'), COLUMNS, rows, 'ON CONFLICT (org_id, id) DO NOTHING');
    return rejected;
  },
};
