import type { MigrationBuilder } from 'node-pg-migrate';

/**
 * `projection_rebuilds`: the checkpoint of a blue/green rebuild in progress (projections/rebuild.ts),
 * one row per projection, moved in the same transaction as each batch written into the shadow
 * tables. A rebuild that dies resumes from it (same projection version, shadow tables still
 * there) instead of restarting from position zero; the swap deletes it. No org_id: it holds no
 * tenant data. The writer role's grant is in hub/eventstore/roles.ts (PROJECTION_TABLES).
 */
export const up = (pgm: MigrationBuilder): void => {
  pgm.sql(`
CREATE TABLE projection_rebuilds (
  name            text        PRIMARY KEY,
  version         int         NOT NULL,
  position_tx     xid8        NOT NULL,
  position        bigint      NOT NULL,
  events_applied  bigint      NOT NULL DEFAULT 0,
  dead_letters    bigint      NOT NULL DEFAULT 0,
  started_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
`);
};

export const down = false;
