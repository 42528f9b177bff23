import type { MigrationBuilder } from 'node-pg-migrate';
import { rolesSql, DEFAULT_APP_ROLE, DEFAULT_PROJECTOR_ROLE } from '../hub/eventstore/roles.ts';

/**
 * Event store, version 1: the append-only `events` table, the `streams` version table used for
 * optimistic concurrency, row-level security on both, the set-based append function used by group
 * commit, and the app / projector roles. See docs/eventstore.md.
 */
export const up = (pgm: MigrationBuilder): void => {
  pgm.sql(`
CREATE TABLE streams (
  org_id    text   NOT NULL,
  stream_id text   NOT NULL,
  -- stream_position of the stream's last event (0-based); a missing row means "no stream"
  version   bigint NOT NULL,
  PRIMARY KEY (org_id, stream_id)
);

CREATE TABLE events (
  org_id          text        NOT NULL,
  global_position bigserial   NOT NULL,
  transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
  stream_id       text        NOT NULL,
  stream_position bigint      NOT NULL,
  event_id        uuid        NOT NULL UNIQUE,
  type            text        NOT NULL,
  schema_version  int         NOT NULL DEFAULT 1,
  data            jsonb       NOT NULL,
  metadata        jsonb       NOT NULL,
  idempotency_key text        NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  -- leads with org_id (the partition key) and serves org-filtered readAll in global order
  PRIMARY KEY (org_id, transaction_id, global_position),
  UNIQUE (org_id, stream_id, stream_position)
);
CREATE UNIQUE INDEX events_org_idempotency_key ON events (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- cross-org readAll (projector) in global order
CREATE INDEX events_tx_position ON events (transaction_id, global_position);

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
ALTER TABLE streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE streams FORCE ROW LEVEL SECURITY;
-- current_setting(.., true) is NULL or '' when unset: the comparison is then never true, so no rows
CREATE POLICY events_org ON events
  USING (org_id = current_setting('app.org_id', true))
  WITH CHECK (org_id = current_setting('app.org_id', true));
CREATE POLICY streams_org ON streams
  USING (org_id = current_setting('app.org_id', true))
  WITH CHECK (org_id = current_setting('app.org_id', true));

CREATE TYPE eventstore_outcome AS (
  idx       int,      -- index of the append in the batch
  status    text,     -- ok | duplicate | conflict | error
  version   bigint,   -- ok/duplicate: stream version after the append; conflict: actual version (-1 = no stream)
  positions bigint[], -- global positions of the appended (or original) events
  ids       uuid[],
  message   text      -- error only
);

-- One step of a group-commit batch: the appends of one org and one "round" (the r-th append of
-- each stream in the batch), so every stream appears at most once and the three upserts below touch
-- disjoint rows. p_appends rows: i (index in the batch), s (stream), k (0 any, 1 no stream,
-- 2 stream exists, 3 exact), v (expected version when k = 3), n (event count).
-- p_events rows: a (append index), q (0-based order in the append), id, t, sv, d, m, key.
-- p_only restricts the step to one append (the slow path).
CREATE FUNCTION eventstore_append_step(p_org text, p_appends jsonb, p_events jsonb, p_only int)
RETURNS SETOF eventstore_outcome LANGUAGE plpgsql
-- Generic plans: no per-call planning. No nested loops: the row estimates of jsonb_to_recordset
-- and CTEs are guesses (1 row), and a nested loop between two CTEs of a 500-append batch is
-- quadratic. Index access below is by "= ANY(array)" scans, which need no join.
SET plan_cache_mode = force_generic_plan
SET enable_nestloop = off
AS $fn$
DECLARE
  v_streams text[];
BEGIN
  SELECT array_agg(x.s ORDER BY x.s) INTO v_streams
    FROM jsonb_to_recordset(p_appends) AS x(i int, s text) WHERE p_only IS NULL OR x.i = p_only;
  -- Lock the existing stream rows in one global order (org, stream) so that concurrent batches
  -- cannot deadlock on them; the statement below then sees their latest committed versions.
  PERFORM 1 FROM streams st WHERE st.org_id = p_org AND st.stream_id = ANY (v_streams)
   ORDER BY st.stream_id FOR UPDATE;

  RETURN QUERY
  WITH a AS MATERIALIZED (
    SELECT x.i, x.s, x.k, x.v, x.n
      FROM jsonb_to_recordset(p_appends) AS x(i int, s text, k int, v bigint, n int)
     WHERE p_only IS NULL OR x.i = p_only
  ), e AS MATERIALIZED (
    SELECT y.a, y.q, y.id, y.t, y.sv, coalesce(y.d, 'null'::jsonb) AS d, y.m, y.key
      FROM jsonb_to_recordset(p_events) AS y(a int, q int, id uuid, t text, sv int, d jsonb, m jsonb, key text)
     WHERE p_only IS NULL OR y.a = p_only
  ), recorded AS MATERIALIZED (
    -- events already recorded under one of this step's idempotency keys
    SELECT ev.idempotency_key AS key, ev.stream_position, ev.global_position, ev.event_id
      FROM events ev
     WHERE ev.org_id = p_org AND ev.idempotency_key IS NOT NULL
       AND ev.idempotency_key = ANY (ARRAY(SELECT e.key FROM e WHERE e.key IS NOT NULL))
  ), dup AS MATERIALIZED (
    SELECT DISTINCT e.a FROM e JOIN recorded r ON r.key = e.key
  ), c AS MATERIALIZED (
    SELECT a.* FROM a WHERE a.i NOT IN (SELECT dup.a FROM dup)
  ), cur AS (
    SELECT st.stream_id, st.version FROM streams st
     WHERE st.org_id = p_org AND st.stream_id = ANY (v_streams)
  ), w_any AS (
    INSERT INTO streams AS st (org_id, stream_id, version)
    SELECT p_org, c.s, c.n - 1 FROM c WHERE c.k = 0 ORDER BY c.s
    ON CONFLICT (org_id, stream_id) DO UPDATE SET version = st.version + excluded.version + 1
    RETURNING st.stream_id, st.version
  ), w_new AS (
    INSERT INTO streams AS st (org_id, stream_id, version)
    SELECT p_org, c.s, c.n - 1 FROM c WHERE c.k = 1 ORDER BY c.s
    ON CONFLICT (org_id, stream_id) DO NOTHING
    RETURNING st.stream_id, st.version
  ), w_upd AS (
    UPDATE streams st SET version = st.version + c.n
      FROM c
     WHERE st.org_id = p_org AND st.stream_id = ANY (v_streams)
       AND c.k IN (2, 3) AND st.stream_id = c.s AND (c.k = 2 OR st.version = c.v)
    RETURNING st.stream_id, st.version
  ), ok AS MATERIALIZED (
    SELECT c.i, c.s, c.n, w.version
      FROM c JOIN (SELECT * FROM w_any UNION ALL SELECT * FROM w_new UNION ALL SELECT * FROM w_upd) w ON w.stream_id = c.s
  ), ins AS (
    INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, idempotency_key)
    SELECT p_org, ok.s, ok.version - ok.n + 1 + e.q, e.id, e.t, e.sv, e.d, e.m, e.key
      FROM ok JOIN e ON e.a = ok.i
     ORDER BY ok.i, e.q
    RETURNING events.stream_id, events.stream_position, events.global_position, events.event_id
  )
  SELECT ok.i, 'ok'::text, ok.version,
         array_agg(ins.global_position ORDER BY ins.stream_position),
         array_agg(ins.event_id ORDER BY ins.stream_position), NULL::text
    FROM ok JOIN ins ON ins.stream_id = ok.s
   GROUP BY ok.i, ok.version
  UNION ALL
  SELECT c.i, 'conflict'::text, coalesce(cur.version, -1), NULL::bigint[], NULL::uuid[], NULL::text
    FROM c LEFT JOIN cur ON cur.stream_id = c.s
   WHERE c.i NOT IN (SELECT ok.i FROM ok)
  UNION ALL
  SELECT dup.a, 'duplicate'::text, max(r.stream_position),
         array_agg(r.global_position ORDER BY r.global_position),
         array_agg(r.event_id ORDER BY r.global_position), NULL::text
    FROM dup JOIN e ON e.a = dup.a JOIN recorded r ON r.key = e.key
   GROUP BY dup.a;
END
$fn$;

-- A whole group-commit batch in one call (one round trip). p_steps is an array of
-- {"o": org, "a": appends, "e": events}, orgs in a fixed order (so row locks are taken in one global
-- order) and each org's rounds in arrival order. Runs as the caller (the app role), so RLS applies;
-- app.org_id is set before each step, which is why one batch may mix orgs.
-- A unique violation (an idempotency key or event id racing with another transaction) rolls back
-- the fast path only; the batch is then redone one append per subtransaction, so that it fails or
-- resolves only that append.
CREATE FUNCTION eventstore_append(p_steps jsonb)
RETURNS SETOF eventstore_outcome LANGUAGE plpgsql AS $fn$
DECLARE
  v_out eventstore_outcome[] := '{}';
  v_step jsonb;
  v_i int;
BEGIN
  BEGIN
    FOR v_step IN SELECT jsonb_array_elements(p_steps) LOOP
      PERFORM set_config('app.org_id', v_step->>'o', true);
      v_out := v_out || ARRAY(SELECT s FROM eventstore_append_step(v_step->>'o', v_step->'a', v_step->'e', NULL) s);
    END LOOP;
    RETURN QUERY SELECT * FROM unnest(v_out);
    RETURN;
  EXCEPTION WHEN unique_violation THEN
    v_out := '{}';
  END;
  FOR v_step IN SELECT jsonb_array_elements(p_steps) LOOP
    PERFORM set_config('app.org_id', v_step->>'o', true);
    FOR v_i IN SELECT (x->>'i')::int FROM jsonb_array_elements(v_step->'a') x LOOP
      BEGIN
        v_out := v_out || ARRAY(SELECT s FROM eventstore_append_step(v_step->>'o', v_step->'a', v_step->'e', v_i) s);
      EXCEPTION WHEN unique_violation THEN
        -- the racing transaction has committed by now: a retry sees its key and reports a duplicate
        BEGIN
          v_out := v_out || ARRAY(SELECT s FROM eventstore_append_step(v_step->>'o', v_step->'a', v_step->'e', v_i) s);
        EXCEPTION WHEN unique_violation THEN
          v_out := v_out || ROW(v_i, 'error', NULL, NULL, NULL, SQLERRM)::eventstore_outcome;
        END;
      END;
    END LOOP;
  END LOOP;
  RETURN QUERY SELECT * FROM unnest(v_out);
END
$fn$;
`);
  pgm.sql(
    rolesSql(process.env.ORGHUB_DATABASE_APP_ROLE || DEFAULT_APP_ROLE, process.env.ORGHUB_DATABASE_PROJECTOR_ROLE || DEFAULT_PROJECTOR_ROLE),
  );
};

export const down = (pgm: MigrationBuilder): void => {
  pgm.sql(`
DROP FUNCTION IF EXISTS eventstore_append(jsonb);
DROP FUNCTION IF EXISTS eventstore_append_step(text, jsonb, jsonb, int);
DROP TYPE IF EXISTS eventstore_outcome;
DROP TABLE IF EXISTS events;
DROP TABLE IF EXISTS streams;
`);
};
