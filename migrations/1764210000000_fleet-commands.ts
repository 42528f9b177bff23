import type { MigrationBuilder } from 'node-pg-migrate';

/**
 * Fleet commands in the `device_commands` read model (docs/fleet.md). Fleet commands (streams
 * `fleet:<device>`, hub/fleet) share the table with the generic recorded commands; they are the
 * rows with an `expires_at`. Their status moves queued → delivered → succeeded | failed |
 * rejected, or expired, cancelled (the generic ones stay `issued`).
 *
 * - `expires_at`: when an unacked command expires (readers show `expired` past it even before
 *   the `fleet.command.expired` event is folded);
 * - `fleet_id`: the bulk command it belongs to, for the per-status summary
 *   (`GET /v1/fleet/commands/{id}`), with an index on (org_id, fleet_id, status);
 * - `delivered_at`, `details`: the first delivery, and the device's ack details.
 * The table keeps its RLS policy and grants (table-level grants cover new columns).
 */
export const up = (pgm: MigrationBuilder): void => {
  pgm.sql(`
ALTER TABLE device_commands
  ADD COLUMN expires_at   timestamptz NULL,
  ADD COLUMN fleet_id     uuid        NULL,
  ADD COLUMN delivered_at timestamptz NULL,
  ADD COLUMN details      text        NULL;
CREATE INDEX device_commands_org_fleet ON device_commands (org_id, fleet_id, status) WHERE fleet_id IS NOT NULL;
`);
};

export const down = false;
