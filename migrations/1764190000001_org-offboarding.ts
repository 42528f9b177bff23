import type { MigrationBuilder } from 'node-pg-migrate';

/**
 * Offboarding (issue 10, docs/access.md "Offboarding"): `orghub_offboard_org` erases one org's events,
 * stream versions and read-model rows in one transaction and leaves a tombstone in `org_tombstones`
 * (the org id, when, by whom, how many events). SECURITY DEFINER so the hub's role needs neither
 * DELETE on the log nor on the read models; EXECUTE is revoked from PUBLIC and granted to the app role
 * alone (hub/eventstore/roles.ts). It sets `app.org_id` itself, so even an owner under FORCE RLS
 * deletes that org's rows and no other's.
 */
export const up = (pgm: MigrationBuilder): void => {
  pgm.sql(`
CREATE TABLE org_tombstones (
  org_id          text        NOT NULL PRIMARY KEY,
  offboarded_at   timestamptz NOT NULL DEFAULT now(),
  actor           text        NOT NULL,
  events_deleted  bigint      NOT NULL
);
ALTER TABLE org_tombstones ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_tombstones FORCE ROW LEVEL SECURITY;
CREATE POLICY org_tombstones_org ON org_tombstones USING (org_id = current_setting('app.org_id', true)) WITH CHECK (org_id = current_setting('app.org_id', true));

CREATE FUNCTION orghub_offboard_org(p_org text, p_actor text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $fn$
DECLARE
  n bigint;
  t text;
BEGIN
  IF p_org IS NULL OR p_org = '' THEN
    RAISE EXCEPTION 'no org';
  END IF;
  PERFORM set_config('app.org_id', p_org, true);
  DELETE FROM events WHERE org_id = p_org;
  GET DIAGNOSTICS n = ROW_COUNT;
  DELETE FROM streams WHERE org_id = p_org;
  FOREACH t IN ARRAY ARRAY['orgs', 'devices', 'sessions', 'audit_log', 'device_commands', 'projection_dead_letters'] LOOP
    EXECUTE format('DELETE FROM %I WHERE org_id = $1', t) USING p_org;
  END LOOP;
  INSERT INTO org_tombstones (org_id, actor, events_deleted) VALUES (p_org, p_actor, n)
  ON CONFLICT (org_id) DO UPDATE SET offboarded_at = now(), actor = EXCLUDED.actor, events_deleted = org_tombstones.events_deleted + EXCLUDED.events_deleted;
  RETURN n;
END
$fn$;
REVOKE ALL ON FUNCTION orghub_offboard_org(text, text) FROM PUBLIC;
`);
};

export const down = (pgm: MigrationBuilder): void => {
  pgm.sql('DROP FUNCTION orghub_offboard_org(text, text); DROP TABLE org_tombstones;');
};
