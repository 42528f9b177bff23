import type { MigrationBuilder } from 'node-pg-migrate';

/**
 * The `orgs` read model folds the org lifecycle events of each org's `org` stream (issue 10,
 * docs/projections.md): limit overrides, when the org was provisioned, whether and why it is
 * suspended, and the global position of the last lifecycle event applied, so a batch applied twice
 * (a rebuild next to the live projector) can never move a row back to an older state.
 */
export const up = (pgm: MigrationBuilder): void => {
  pgm.sql(`
ALTER TABLE orgs
  ADD COLUMN limits             jsonb       NOT NULL DEFAULT '{}'::jsonb,
  ADD COLUMN created_at         timestamptz NULL,
  ADD COLUMN suspended_at       timestamptz NULL,
  ADD COLUMN suspend_reason     text        NULL,
  ADD COLUMN lifecycle_position bigint      NULL;
`);
};

export const down = (pgm: MigrationBuilder): void => {
  pgm.sql(`ALTER TABLE orgs DROP COLUMN limits, DROP COLUMN created_at, DROP COLUMN suspended_at, DROP COLUMN suspend_reason, DROP COLUMN lifecycle_position;`);
};
