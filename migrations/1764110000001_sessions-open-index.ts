import type { MigrationBuilder } from 'node-pg-migrate';

/**
 * The sessions projection recomputes a device's open-session count and current session after each
 * batch that touches it; this partial index makes that a lookup of its open sessions instead of a
 * scan of all its sessions (which grew quadratically with a device's history). docs/projections.md.
 */
export const up = (pgm: MigrationBuilder): void => {
  pgm.sql(`CREATE INDEX sessions_org_device_open ON sessions (org_id, device_id, connected_at DESC) WHERE disconnected_at IS NULL`);
};

export const down = false;
