import type { Projection } from '../projection.ts';
import { insertNew, type Column } from '../sql.ts';
import { foldCommands, isCommandEvent, type CommandRow } from './commandsFold.ts';
import { foldFleet, isFleetEvent, type StatusMove } from './fleetFold.ts';

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
  { name: 'expires_at', type: 'timestamptz', get: (r) => r.expires_at },
  { name: 'fleet_id', type: 'uuid', get: (r) => r.fleet_id },
];

/** Applies forward-only status moves in one statement; `from` lists the statuses a row may move from. */
async function move(tx: Parameters<Projection['handle']>[1], table: string, moves: StatusMove[], from: string[], delivered: boolean): Promise<void> {
  if (moves.length === 0) return;
  const set = delivered ? 'status = u.status, delivered_at = u.at, updated_at = u.at' : 'status = u.status, details = COALESCE(u.details, t.details), updated_at = u.at';
  await tx.query(
    `UPDATE ${table} AS t SET ${set}
       FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[]) AS u(org_id, id, status, at, details)
      WHERE t.org_id = u.org_id AND t.id = u.id AND t.status = ANY($6::text[])`,
    [moves.map((m) => m.org_id), moves.map((m) => m.id), moves.map((m) => m.status), moves.map((m) => m.at), moves.map((m) => m.details), from],
  );
}

/**
 * `device_commands`: one row per recorded command (`issued`) and per fleet command (`queued`,
 * then moved forward by its delivery, ack, expiry or cancel; fleetFold.ts). DO NOTHING on a known
 * id and forward-only moves, so a replayed batch never resets a status a later event moved on.
 * Version 2: fleet commands.
 */
export const deviceCommandsProjection: Projection = {
  name: 'device_commands',
  version: 2,
  tables: ['device_commands'],
  canHandle: (e) => isCommandEvent(e) || isFleetEvent(e),
  async handle(events, tx) {
    const generic = foldCommands(events);
    const fleet = foldFleet(events);
    const rows = [...generic.rows, ...fleet.rows];
    const table = tx.table('device_commands');
    if (rows.length > 0) await insertNew(tx, table, COLUMNS, rows, 'ON CONFLICT (org_id, id) DO NOTHING');
    await move(tx, table, fleet.delivered, ['queued'], true);
    await move(tx, table, fleet.terminal, ['queued', 'delivered'], false);
    return [...generic.rejected, ...fleet.rejected];
  },
};
