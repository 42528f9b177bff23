import type { MigrationBuilder } from 'node-pg-migrate';

/**
 * Read models, version 1 (docs/projections.md). The projector folds the event log into these
 * tables; the query API reads them through a role that cannot bypass row-level security.
 *
 * Every tenant table (and every partition of `audit_log`) has `org_id`, a composite key led by
 * `(org_id, id)`, ENABLE + FORCE ROW LEVEL SECURITY and a policy on `app.org_id` that denies when
 * the setting is unset (NULL or '' never equals an org id).
 *
 * `audit_log` is partitioned by month of `recorded_at`; a partitioned table's primary key must
 * contain the partition key, so its key is `(org_id, id, recorded_at)` (`id`, the event id, is
 * unique on its own). Partitions are created on demand through `readmodel_ensure_audit_partition`,
 * a SECURITY DEFINER function, so the projector's writer role needs no CREATE privilege.
 *
 * Roles and grants are (re)applied by `hub/eventstore/roles.ts` on every migrate run.
 */
export const up = (pgm: MigrationBuilder): void => {
  pgm.sql(`
CREATE TABLE orgs (
  org_id                text        NOT NULL,
  id                    text        NOT NULL,
  status                text        NOT NULL DEFAULT 'active',
  tier                  text        NOT NULL DEFAULT 'standard',
  settings              jsonb       NOT NULL DEFAULT '{}'::jsonb,
  audit_retention_days  int         NOT NULL DEFAULT 90 CHECK (audit_retention_days > 0),
  first_event_at        timestamptz NOT NULL,
  last_event_at         timestamptz NOT NULL,
  PRIMARY KEY (org_id, id),
  CHECK (id = org_id)
);

CREATE TABLE devices (
  org_id           text        NOT NULL,
  id               text        NOT NULL,
  first_seen       timestamptz NOT NULL,
  last_seen        timestamptz NOT NULL,
  online           boolean     NOT NULL DEFAULT false,
  open_sessions    int         NOT NULL DEFAULT 0,
  current_session  text        NULL,
  transport        text        NULL,
  client_id        text        NULL,
  PRIMARY KEY (org_id, id)
);
CREATE INDEX devices_org_last_seen ON devices (org_id, last_seen DESC, id);

CREATE TABLE sessions (
  org_id           text        NOT NULL,
  id               text        NOT NULL,
  actor            text        NOT NULL,
  device_id        text        NULL,
  transport        text        NULL,
  client_id        text        NULL,
  node             text        NULL,
  connected_at     timestamptz NULL,
  disconnected_at  timestamptz NULL,
  duration_ms      bigint      NULL,
  reason           text        NULL,
  close_code       int         NULL,
  PRIMARY KEY (org_id, id)
);
CREATE INDEX sessions_org_connected ON sessions (org_id, connected_at DESC, id);
CREATE INDEX sessions_org_device ON sessions (org_id, device_id, connected_at DESC);

CREATE TABLE audit_log (
  org_id          text        NOT NULL,
  id              uuid        NOT NULL,
  recorded_at     timestamptz NOT NULL,
  global_position bigint      NOT NULL,
  type            text        NOT NULL,
  actor           text        NOT NULL,
  session         text        NULL,
  topic           text        NULL,
  outcome         text        NOT NULL,
  correlation_id  text        NULL,
  node            text        NULL,
  data            jsonb       NOT NULL,
  PRIMARY KEY (org_id, id, recorded_at)
) PARTITION BY RANGE (recorded_at);
-- the query API pages by (recorded_at, id) inside one org
CREATE INDEX audit_log_org_time ON audit_log (org_id, recorded_at, id);
CREATE INDEX audit_log_org_actor ON audit_log (org_id, actor, recorded_at);
CREATE INDEX audit_log_org_type ON audit_log (org_id, type text_pattern_ops, recorded_at);

CREATE TABLE device_commands (
  org_id           text        NOT NULL,
  id               uuid        NOT NULL,
  device_id        text        NULL,
  topic            text        NOT NULL,
  type             text        NOT NULL,
  data             jsonb       NOT NULL,
  status           text        NOT NULL DEFAULT 'issued',
  issued_by        text        NOT NULL,
  issued_at        timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  global_position  bigint      NOT NULL,
  idempotency_key  text        NULL,
  PRIMARY KEY (org_id, id)
);
CREATE INDEX device_commands_org_device ON device_commands (org_id, device_id, issued_at DESC);
CREATE INDEX device_commands_org_issued ON device_commands (org_id, issued_at DESC, id);

-- Projection bookkeeping: not tenant data, no org_id; only the projector's roles touch it.
CREATE TABLE projection_checkpoints (
  name        text        NOT NULL PRIMARY KEY,
  version     int         NOT NULL,
  position_tx xid8        NOT NULL,
  position    bigint      NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Events a handler could not apply. It carries org_id, so it is a tenant table like the others.
CREATE TABLE projection_dead_letters (
  org_id          text        NOT NULL,
  id              bigserial   NOT NULL,
  projection      text        NOT NULL,
  event_id        uuid        NOT NULL,
  position_tx     xid8        NOT NULL,
  global_position bigint      NOT NULL,
  type            text        NOT NULL,
  error           text        NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, id),
  UNIQUE (projection, event_id)
);

DO $rls$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['orgs', 'devices', 'sessions', 'audit_log', 'device_commands', 'projection_dead_letters'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format($p$CREATE POLICY %I ON %I USING (org_id = current_setting('app.org_id', true)) WITH CHECK (org_id = current_setting('app.org_id', true))$p$, t || '_org', t);
  END LOOP;
END
$rls$;

-- Creates (once) the month partition of audit_log that holds p_at, with the same RLS as its parent.
-- SECURITY DEFINER: runs as the migrating owner, so callers need only EXECUTE.
CREATE FUNCTION readmodel_ensure_audit_partition(p_at timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $fn$
DECLARE
  v_from timestamptz := date_trunc('month', p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  v_to   timestamptz := (date_trunc('month', p_at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
  v_name text := 'audit_log_' || to_char(p_at AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
  IF to_regclass(v_name) IS NULL THEN
    -- serialise concurrent creators (a rebuild and the live projector)
    PERFORM pg_advisory_xact_lock(hashtext('readmodel_ensure_audit_partition'));
    IF to_regclass(v_name) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)', v_name, v_from, v_to);
      EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', v_name);
      EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', v_name);
      EXECUTE format($p$CREATE POLICY %I ON %I USING (org_id = current_setting('app.org_id', true)) WITH CHECK (org_id = current_setting('app.org_id', true))$p$, v_name || '_org', v_name);
    END IF;
  END IF;
  RETURN v_name;
END
$fn$;
REVOKE ALL ON FUNCTION readmodel_ensure_audit_partition(timestamptz) FROM PUBLIC;
`);
};

export const down = false;
