import type { MigrationBuilder } from 'node-pg-migrate';

/**
 * The projector's additions to read models v1 (docs/projections.md). Nothing existing is renamed.
 *
 * - `projection_checkpoints.events_applied` / `dead_letters`: monotonic counters moved in the same
 *   transaction as the checkpoint, so /metrics can show dead letters and the crash test can prove
 *   that no batch was applied twice (events_applied = events up to the checkpoint).
 * - `readmodel_ensure_partition_of(parent, at)`: the month partition of `audit_log` or of its
 *   rebuild shadow `audit_log__rebuild` (blue/green rebuild, projections/rebuild.ts).
 * - `readmodel_drop_audit_partition(name, before)`: retention drops whole month partitions of
 *   `audit_log`; the writer role cannot DROP, so this SECURITY DEFINER function does, and only for
 *   a partition of audit_log whose whole month lies before `before`, with a short lock_timeout so a
 *   busy parent makes it fail (retried next sweep) instead of queueing readers behind it.
 */
export const up = (pgm: MigrationBuilder): void => {
  pgm.sql(`
ALTER TABLE projection_checkpoints
  ADD COLUMN events_applied bigint NOT NULL DEFAULT 0,
  ADD COLUMN dead_letters   bigint NOT NULL DEFAULT 0;

CREATE INDEX projection_dead_letters_projection ON projection_dead_letters (projection, global_position);

CREATE FUNCTION readmodel_ensure_partition_of(p_parent text, p_at timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $fn$
DECLARE
  v_from timestamptz := date_trunc('month', p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  v_to   timestamptz := (date_trunc('month', p_at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
  v_name text := p_parent || '_' || to_char(p_at AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
  IF p_parent NOT IN ('audit_log', 'audit_log__rebuild') THEN
    RAISE EXCEPTION 'readmodel_ensure_partition_of: % is not a partitioned read model', p_parent USING ERRCODE = '42501';
  END IF;
  IF to_regclass(v_name) IS NULL THEN
    PERFORM pg_advisory_xact_lock(hashtext('readmodel_ensure_audit_partition'));
    IF to_regclass(v_name) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', v_name, p_parent, v_from, v_to);
      EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', v_name);
      EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', v_name);
      EXECUTE format($p$CREATE POLICY %I ON %I USING (org_id = current_setting('app.org_id', true)) WITH CHECK (org_id = current_setting('app.org_id', true))$p$, 'audit_log_' || to_char(p_at AT TIME ZONE 'UTC', 'YYYY_MM') || '_org', v_name);
    END IF;
  END IF;
  RETURN v_name;
END
$fn$;
REVOKE ALL ON FUNCTION readmodel_ensure_partition_of(text, timestamptz) FROM PUBLIC;

CREATE FUNCTION readmodel_drop_audit_partition(p_name text, p_before timestamptz) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $fn$
DECLARE
  v_end timestamptz;
BEGIN
  IF p_name !~ '^audit_log_[0-9]{4}_[0-9]{2}$' OR NOT EXISTS (
       SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = 'public.audit_log'::regclass AND c.relname = p_name) THEN
    RAISE EXCEPTION 'readmodel_drop_audit_partition: % is not a partition of audit_log', p_name USING ERRCODE = '42501';
  END IF;
  -- the partition's upper bound: the first instant (UTC) of the month after its own
  v_end := ((substr(p_name, 11, 4) || '-' || substr(p_name, 16, 2) || '-01')::date + interval '1 month')::timestamp AT TIME ZONE 'UTC';
  IF v_end > p_before THEN
    RETURN false;
  END IF;
  SET LOCAL lock_timeout = '2s';
  EXECUTE format('DROP TABLE %I', p_name);
  RETURN true;
END
$fn$;
REVOKE ALL ON FUNCTION readmodel_drop_audit_partition(text, timestamptz) FROM PUBLIC;
`);
};

export const down = false;
