import type { MigrationBuilder } from 'node-pg-migrate';

/**
 * Event store, version 2: a fast append path. See docs/eventstore.md ("Group commit").
 *
 * Version 1's `eventstore_append(jsonb)` cost 1.5-3 ms of server CPU even for a one-event batch:
 * two jsonb_to_recordset parses per step, ten MATERIALIZED CTEs, forced generic plans and
 * `enable_nestloop = off` (a function with SET clauses also pays a GUC save/restore per call).
 * Version 2 takes the batch as typed arrays (`unnest()` gives exact row estimates in custom plans
 * and no JSON parsing of the envelope), and a step is one or two plain statements:
 *  - only ANY appends (commands, audit — the overwhelmingly common case): one sorted upsert of
 *    the streams' versions (a stream may appear several times; each append gets its slice) and
 *    one multi-row INSERT of the events, in a single statement;
 *  - with a NO_STREAM / STREAM_EXISTS / numeric expectation: lock the existing stream rows in
 *    (stream) order, then the same statement plus a conditional UPDATE.
 * Idempotency keys are looked up (one index probe per key) only when the step has any.
 *
 * The version 1 functions stay, unused by this version of the adapter, so that hub processes
 * still running the previous release keep working during a rolling deploy; a later migration
 * drops them.
 */
export const up = (pgm: MigrationBuilder): void => {
  pgm.sql(`
-- One step of a group-commit batch: the appends of one org (app.org_id is set by the caller).
-- p_flags: 1 = some event carries an idempotency key (probe them first), 2 = some append is not
-- ANY, 4 = keys present but not probed (ANY-only steps: a recorded key makes the insert skip its
-- row, and the step raises ES001 so that the caller redoes the batch with probes). Without flag 2
-- a stream may appear several times (in batch order); with it, each stream that has a non-ANY
-- append appears once (the adapter splits such streams into rounds).
-- a_*: one entry per append (i = index in the batch, s = stream, k = 0 any / 1 no stream /
-- 2 stream exists / 3 exact, v = expected version when k = 3, n = event count).
-- e_*: one entry per event, grouped by append in a_* order (a = append index, q = order in it).
-- u_*, a_u/a_off/a_e0, e_s/e_u/e_off: the same batch laid out by the adapter for the lean ANY path:
-- the step's distinct streams in byte (COLLATE "C") order with their event totals; per append its
-- stream (1-based in u_*), how many of the stream's events in this step precede it, and its first
-- event (1-based in e_*); per event its stream, stream index and offset in the stream's slice.
CREATE FUNCTION eventstore_append_step_v2(
  p_org text, p_flags int,
  a_i int[], a_s text[], a_k int[], a_v bigint[], a_n int[],
  e_a int[], e_q int[], e_id uuid[], e_t text[], e_sv int[], e_d jsonb[], e_m jsonb[], e_key text[],
  u_s text[], u_t int[], a_u int[], a_off int[], a_e0 int[], e_s text[], e_u int[], e_off int[])
RETURNS eventstore_outcome[] LANGUAGE plpgsql AS $fn$
DECLARE
  v_new  bigint[];
  v_chk  text[];
  v_out  eventstore_outcome[] := '{}';
  v_ok   eventstore_outcome[];
  v_dup  int[] := '{}';
  v_done int[];
  v_no   text[];
  v_ver  bigint;
  v_gp   bigint;
  v_pos  bigint[];
  v_ids  uuid[];
BEGIN
  IF cardinality(a_i) = 1 THEN
    -- One append (light load, or the slow path): plain single-row statements, the cheapest form.
    IF p_flags & 1 <> 0 THEN
      SELECT max(r.stream_position), array_agg(r.global_position ORDER BY r.global_position), array_agg(r.event_id ORDER BY r.global_position)
        INTO v_ver, v_pos, v_ids
        FROM events r WHERE r.org_id = p_org AND r.idempotency_key IS NOT NULL AND r.idempotency_key = ANY (e_key);
      IF v_pos IS NOT NULL THEN
        RETURN ARRAY[ROW(a_i[1], 'duplicate', v_ver, v_pos, v_ids, NULL)::eventstore_outcome];
      END IF;
    END IF;
    IF a_k[1] = 0 THEN
      INSERT INTO streams AS st (org_id, stream_id, version) VALUES (p_org, a_s[1], a_n[1] - 1)
      ON CONFLICT (org_id, stream_id) DO UPDATE SET version = st.version + excluded.version + 1
      RETURNING st.version INTO v_ver;
    ELSIF a_k[1] = 1 THEN
      INSERT INTO streams AS st (org_id, stream_id, version) VALUES (p_org, a_s[1], a_n[1] - 1)
      ON CONFLICT (org_id, stream_id) DO NOTHING
      RETURNING st.version INTO v_ver;
    ELSE
      UPDATE streams st SET version = st.version + a_n[1]
       WHERE st.org_id = p_org AND st.stream_id = a_s[1] AND (a_k[1] = 2 OR st.version = a_v[1])
      RETURNING st.version INTO v_ver;
    END IF;
    IF v_ver IS NULL THEN
      SELECT st.version INTO v_ver FROM streams st WHERE st.org_id = p_org AND st.stream_id = a_s[1];
      RETURN ARRAY[ROW(a_i[1], 'conflict', coalesce(v_ver, -1), NULL, NULL, NULL)::eventstore_outcome];
    END IF;
    IF a_n[1] = 1 AND p_flags & 4 = 0 THEN
      INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, idempotency_key)
      VALUES (p_org, a_s[1], v_ver, e_id[1], e_t[1], e_sv[1], coalesce(e_d[1], 'null'::jsonb), e_m[1], e_key[1])
      RETURNING events.global_position INTO v_gp;
      RETURN ARRAY[ROW(a_i[1], 'ok', v_ver, ARRAY[v_gp], e_id, NULL)::eventstore_outcome];
    ELSIF a_n[1] = 1 THEN
      -- unprobed key: a recorded one shows as a skipped row (the caller then redoes the batch with probes)
      INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, idempotency_key)
      VALUES (p_org, a_s[1], v_ver, e_id[1], e_t[1], e_sv[1], coalesce(e_d[1], 'null'::jsonb), e_m[1], e_key[1])
      ON CONFLICT (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
      RETURNING events.global_position INTO v_gp;
      IF v_gp IS NULL THEN
        RAISE EXCEPTION 'idempotency key already recorded' USING ERRCODE = 'ES001';
      END IF;
      RETURN ARRAY[ROW(a_i[1], 'ok', v_ver, ARRAY[v_gp], e_id, NULL)::eventstore_outcome];
    END IF;
    WITH ins AS (
      INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, idempotency_key)
      SELECT p_org, a_s[1], v_ver - a_n[1] + 1 + e.q, e.id, e.t, e.sv, coalesce(e.d, 'null'::jsonb), e.m, e.key
        FROM unnest(e_q, e_id, e_t, e_sv, e_d, e_m, e_key) AS e(q, id, t, sv, d, m, key)
       ORDER BY e.q
      ON CONFLICT (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
      RETURNING events.global_position
    )
    SELECT array_agg(ins.global_position ORDER BY ins.global_position) INTO v_pos FROM ins;
    IF cardinality(v_pos) IS DISTINCT FROM a_n[1] THEN
      -- only reachable unprobed (a probed key was found above): redo the batch with probes
      RAISE EXCEPTION 'idempotency key already recorded' USING ERRCODE = 'ES001';
    END IF;
    RETURN ARRAY[ROW(a_i[1], 'ok', v_ver, v_pos, e_id, NULL)::eventstore_outcome];
  END IF;

  IF p_flags & 1 <> 0 THEN
    -- appends whose idempotency key is already recorded: the original result, nothing appended
    SELECT coalesce(array_agg(ROW(d.a, 'duplicate', d.version, d.positions, d.ids, NULL)::eventstore_outcome), '{}'),
           coalesce(array_agg(d.a), '{}')
      INTO v_out, v_dup
      FROM (SELECT e.a, max(r.stream_position) AS version,
                   array_agg(r.global_position ORDER BY r.global_position) AS positions,
                   array_agg(r.event_id ORDER BY r.global_position) AS ids
              FROM unnest(e_a, e_key) AS e(a, key)
              JOIN events r ON r.org_id = p_org AND r.idempotency_key IS NOT NULL AND r.idempotency_key = e.key
             GROUP BY e.a) d;
    IF cardinality(v_dup) = cardinality(a_i) THEN
      RETURN v_out;
    END IF;
  END IF;

  IF p_flags & 2 = 0 AND cardinality(v_dup) = 0 AND u_s IS NOT NULL THEN
    -- Lean ANY path (the common case): three plain statements without joins or sorts. Bump each
    -- stream once by its total, in the adapter's byte order (one global lock order)...
    WITH w AS (
      INSERT INTO streams AS st (org_id, stream_id, version)
      SELECT p_org, x.s, x.t - 1 FROM unnest(u_s, u_t) AS x(s, t)
      ON CONFLICT (org_id, stream_id) DO UPDATE SET version = st.version + excluded.version + 1
      RETURNING st.stream_id, st.version
    )
    SELECT array_agg(w.version ORDER BY w.stream_id COLLATE "C"), array_agg(w.stream_id ORDER BY w.stream_id COLLATE "C")
      INTO v_new, v_chk FROM w;
    IF v_chk IS DISTINCT FROM u_s THEN
      RAISE EXCEPTION 'eventstore_append_step_v2: streams not in byte order or not distinct';
    END IF;
    -- ...insert the events in batch order (global positions follow it; stream position = the
    -- stream's first new position + the event's offset in the stream's slice)...
    IF p_flags & 4 = 0 THEN
      WITH ins AS (
        INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, idempotency_key)
        SELECT p_org, e.s, v_new[e.u] - u_t[e.u] + 1 + e.off, e.id, e.t, e.sv, coalesce(e.d, 'null'::jsonb), e.m, e.key
          FROM unnest(e_s, e_u, e_off, e_id, e_t, e_sv, e_d, e_m, e_key) AS e(s, u, off, id, t, sv, d, m, key)
        RETURNING events.global_position
      )
      SELECT array_agg(ins.global_position ORDER BY ins.global_position) INTO v_pos FROM ins;
    ELSE
      -- unprobed keys: a recorded one shows as a skipped row (the caller then redoes the batch with probes)
      WITH ins AS (
        INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, idempotency_key)
        SELECT p_org, e.s, v_new[e.u] - u_t[e.u] + 1 + e.off, e.id, e.t, e.sv, coalesce(e.d, 'null'::jsonb), e.m, e.key
          FROM unnest(e_s, e_u, e_off, e_id, e_t, e_sv, e_d, e_m, e_key) AS e(s, u, off, id, t, sv, d, m, key)
        ON CONFLICT (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING events.global_position
      )
      SELECT array_agg(ins.global_position ORDER BY ins.global_position) INTO v_pos FROM ins;
      IF cardinality(v_pos) IS DISTINCT FROM cardinality(e_id) THEN
        RAISE EXCEPTION 'idempotency key already recorded' USING ERRCODE = 'ES001';
      END IF;
    END IF;
    -- ...and cut the results per append.
    SELECT array_agg(ROW(x.i, 'ok', v_new[x.u] - u_t[x.u] + x.off + x.n, v_pos[x.e0 : x.e0 + x.n - 1], e_id[x.e0 : x.e0 + x.n - 1], NULL)::eventstore_outcome)
      INTO v_ok FROM unnest(a_i, a_u, a_off, a_n, a_e0) AS x(i, u, off, n, e0);
    RETURN v_out || v_ok;
  END IF;

  IF p_flags & 2 = 0 THEN
    -- Only ANY, with duplicates among them: bump every stream once by its total, in (stream) order so that concurrent
    -- batches take the row locks in one global order; each append gets its slice in batch order.
    WITH a AS (
      SELECT x.i, x.s, x.n,
             sum(x.n) OVER (PARTITION BY x.s ORDER BY x.i) AS upto,
             sum(x.n) OVER (PARTITION BY x.s) AS total
        FROM unnest(a_i, a_s, a_n) AS x(i, s, n)
       WHERE x.i <> ALL (v_dup)
    ), w AS (
      INSERT INTO streams AS st (org_id, stream_id, version)
      SELECT p_org, a.s, max(a.total) - 1 FROM a GROUP BY a.s ORDER BY a.s COLLATE "C"
      ON CONFLICT (org_id, stream_id) DO UPDATE SET version = st.version + excluded.version + 1
      RETURNING st.stream_id, st.version
    ), ok AS (
      SELECT a.i, a.n, a.s, w.version - a.total + a.upto AS version FROM a JOIN w ON w.stream_id = a.s
    ), ins AS (
      INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, idempotency_key)
      SELECT p_org, ok.s, ok.version - ok.n + 1 + e.q, e.id, e.t, e.sv, coalesce(e.d, 'null'::jsonb), e.m, e.key
        FROM unnest(e_a, e_q, e_id, e_t, e_sv, e_d, e_m, e_key) AS e(a, q, id, t, sv, d, m, key)
        JOIN ok ON ok.i = e.a
       ORDER BY e.a, e.q
      RETURNING events.event_id, events.global_position
    )
    SELECT array_agg(ROW(o.i, 'ok', o.version, o.positions, o.ids, NULL)::eventstore_outcome)
      INTO v_ok
      FROM (SELECT ok.i, ok.version,
                   array_agg(ins.global_position ORDER BY ins.global_position) AS positions,
                   array_agg(ins.event_id ORDER BY ins.global_position) AS ids
              FROM ins JOIN unnest(e_id, e_a) AS e(id, a) ON e.id = ins.event_id JOIN ok ON ok.i = e.a
             GROUP BY ok.i, ok.version) o;
    RETURN v_out || coalesce(v_ok, '{}');
  END IF;

  -- Expectations to check. Lock the step's existing stream rows first, in the same (stream)
  -- order, so the statement below sees their latest committed versions.
  PERFORM 1 FROM streams st WHERE st.org_id = p_org AND st.stream_id = ANY (a_s)
   ORDER BY st.stream_id COLLATE "C" FOR UPDATE;
  SELECT coalesce(array_agg(x.s), '{}') INTO v_no FROM unnest(a_s, a_k) AS x(s, k) WHERE x.k = 1;
  WITH a AS (
    SELECT x.i, x.s, x.k, x.v, x.n,
           sum(x.n) OVER (PARTITION BY x.s ORDER BY x.i) AS upto,
           sum(x.n) OVER (PARTITION BY x.s) AS total
      FROM unnest(a_i, a_s, a_k, a_v, a_n) AS x(i, s, k, v, n)
     WHERE x.i <> ALL (v_dup)
  ), w_ins AS (
    -- ANY: upsert; NO_STREAM: insert, and leave an existing row alone (a conflict)
    INSERT INTO streams AS st (org_id, stream_id, version)
    SELECT p_org, a.s, max(a.total) - 1 FROM a WHERE a.k IN (0, 1) GROUP BY a.s ORDER BY a.s COLLATE "C"
    ON CONFLICT (org_id, stream_id) DO UPDATE SET version = st.version + excluded.version + 1
      WHERE excluded.stream_id <> ALL (v_no)
    RETURNING st.stream_id, st.version
  ), w_upd AS (
    -- STREAM_EXISTS, exact version: the row must exist (and match)
    UPDATE streams st SET version = st.version + a.n FROM a
     WHERE st.org_id = p_org AND st.stream_id = a.s AND a.k IN (2, 3) AND (a.k = 2 OR st.version = a.v)
    RETURNING st.stream_id, st.version
  ), ok AS (
    SELECT a.i, a.n, a.s, w.version - a.total + a.upto AS version
      FROM a JOIN (SELECT * FROM w_ins UNION ALL SELECT * FROM w_upd) w ON w.stream_id = a.s
  ), ins AS (
    INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, idempotency_key)
    SELECT p_org, ok.s, ok.version - ok.n + 1 + e.q, e.id, e.t, e.sv, coalesce(e.d, 'null'::jsonb), e.m, e.key
      FROM unnest(e_a, e_q, e_id, e_t, e_sv, e_d, e_m, e_key) AS e(a, q, id, t, sv, d, m, key)
      JOIN ok ON ok.i = e.a
     ORDER BY e.a, e.q
    RETURNING events.event_id, events.global_position
  )
  SELECT array_agg(ROW(o.i, 'ok', o.version, o.positions, o.ids, NULL)::eventstore_outcome), array_agg(o.i)
    INTO v_ok, v_done
    FROM (SELECT ok.i, ok.version,
                 array_agg(ins.global_position ORDER BY ins.global_position) AS positions,
                 array_agg(ins.event_id ORDER BY ins.global_position) AS ids
            FROM ins JOIN unnest(e_id, e_a) AS e(id, a) ON e.id = ins.event_id JOIN ok ON ok.i = e.a
           GROUP BY ok.i, ok.version) o;
  v_out := v_out || coalesce(v_ok, '{}');
  v_done := coalesce(v_done, '{}') || v_dup;
  IF cardinality(v_done) < cardinality(a_i) THEN
    -- the others failed their expectation: report the stream's actual version (-1 = no stream)
    v_out := v_out || ARRAY(
      SELECT ROW(x.i, 'conflict', coalesce(st.version, -1), NULL, NULL, NULL)::eventstore_outcome
        FROM unnest(a_i, a_s) AS x(i, s)
        LEFT JOIN streams st ON st.org_id = p_org AND st.stream_id = x.s
       WHERE x.i <> ALL (v_done));
  END IF;
  RETURN v_out;
END
$fn$;

-- A whole group-commit batch in one call (one round trip), as typed arrays. Steps (p_orgs,
-- p_flags, p_a_end, p_e_end: 1-based inclusive ends of each step's slice of the append and event
-- arrays) come in a fixed org order, so row locks are taken in one global (org, stream) order.
-- Runs as the caller (the app role): app.org_id is set before each step, so RLS checks every row
-- and one batch may mix orgs.
-- A unique violation (an idempotency key or event id racing with another transaction) rolls back
-- the fast path only; the batch is then redone one append per subtransaction, so that it fails or
-- resolves only that append.
CREATE FUNCTION eventstore_append_v2(
  p_orgs text[], p_flags int[], p_a_end int[], p_e_end int[], p_u_end int[],
  p_i int[], p_s text[], p_k int[], p_v bigint[], p_n int[],
  p_ea int[], p_eq int[], p_id uuid[], p_t text[], p_sv int[], p_d jsonb[], p_m jsonb[], p_key text[],
  p_us text[], p_ut int[], p_au int[], p_aoff int[], p_ae0 int[], p_es text[], p_eu int[], p_eoff int[])
RETURNS SETOF eventstore_outcome LANGUAGE plpgsql
-- Generic plans: the statements are planned once per session, not on every call (unnest() of a
-- parameter is estimated at 100 rows; hash joins and nested loops are both fine at these sizes).
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
  u0 int;
  u1 int;
  v_out eventstore_outcome[] := '{}';
  a0 int;
  a1 int;
  e0 int;
  e1 int;
  v_flags int;
  v_probe boolean := false;
BEGIN
  <<fast>>
  LOOP
  BEGIN
    -- Keys of ANY-only steps are not probed first: the event insert skips a recorded key (ON
    -- CONFLICT on the key index) and the step raises ES001; the batch is then redone with probes,
    -- which report it as a duplicate. Retries (duplicates) are rare, so this saves a statement per step.
    IF cardinality(p_orgs) = 1 THEN
      -- one step (a batch of one org): no slicing
      PERFORM set_config('app.org_id', p_orgs[1], true);
      RETURN QUERY SELECT * FROM unnest(eventstore_append_step_v2(p_orgs[1],
        CASE WHEN NOT v_probe AND p_flags[1] & 3 = 1 THEN 4 ELSE p_flags[1] END,
        p_i, p_s, p_k, p_v, p_n, p_ea, p_eq, p_id, p_t, p_sv, p_d, p_m, p_key,
        p_us, p_ut, p_au, p_aoff, p_ae0, p_es, p_eu, p_eoff));
      RETURN;
    END IF;
    a0 := 1;
    e0 := 1;
    u0 := 1;
    FOR st IN 1 .. cardinality(p_orgs) LOOP
      a1 := p_a_end[st];
      e1 := p_e_end[st];
      u1 := p_u_end[st];
      PERFORM set_config('app.org_id', p_orgs[st], true);
      v_out := v_out || eventstore_append_step_v2(p_orgs[st],
        CASE WHEN NOT v_probe AND p_flags[st] & 3 = 1 THEN 4 ELSE p_flags[st] END,
        p_i[a0:a1], p_s[a0:a1], p_k[a0:a1], p_v[a0:a1], p_n[a0:a1],
        p_ea[e0:e1], p_eq[e0:e1], p_id[e0:e1], p_t[e0:e1], p_sv[e0:e1], p_d[e0:e1], p_m[e0:e1], p_key[e0:e1],
        p_us[u0:u1], p_ut[u0:u1], p_au[a0:a1], p_aoff[a0:a1], p_ae0[a0:a1], p_es[e0:e1], p_eu[e0:e1], p_eoff[e0:e1]);
      a0 := a1 + 1;
      e0 := e1 + 1;
      u0 := u1 + 1;
    END LOOP;
    RETURN QUERY SELECT * FROM unnest(v_out);
    RETURN;
  EXCEPTION
    WHEN unique_violation THEN
      v_out := '{}';
      EXIT fast;
    WHEN SQLSTATE 'ES001' THEN
      IF v_probe THEN
        RAISE;
      END IF;
      v_probe := true;
      v_out := '{}';
  END;
  END LOOP fast;
  -- Slow path: one append at a time (in batch order per stream), each in its own subtransaction.
  a0 := 1;
  e0 := 1;
  FOR st IN 1 .. cardinality(p_orgs) LOOP
    PERFORM set_config('app.org_id', p_orgs[st], true);
    FOR j IN a0 .. p_a_end[st] LOOP
      e1 := e0 + p_n[j] - 1;
      v_flags := CASE WHEN p_k[j] <> 0 THEN 2 ELSE 0 END
               | CASE WHEN EXISTS (SELECT 1 FROM unnest(p_key[e0:e1]) k WHERE k IS NOT NULL) THEN 1 ELSE 0 END;
      BEGIN
        v_out := v_out || eventstore_append_step_v2(p_orgs[st], v_flags,
          p_i[j:j], p_s[j:j], p_k[j:j], p_v[j:j], p_n[j:j],
          p_ea[e0:e1], p_eq[e0:e1], p_id[e0:e1], p_t[e0:e1], p_sv[e0:e1], p_d[e0:e1], p_m[e0:e1], p_key[e0:e1],
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
      EXCEPTION WHEN unique_violation THEN
        -- the racing transaction has committed by now: a retry sees its key and reports a duplicate
        BEGIN
          v_out := v_out || eventstore_append_step_v2(p_orgs[st], v_flags,
            p_i[j:j], p_s[j:j], p_k[j:j], p_v[j:j], p_n[j:j],
            p_ea[e0:e1], p_eq[e0:e1], p_id[e0:e1], p_t[e0:e1], p_sv[e0:e1], p_d[e0:e1], p_m[e0:e1], p_key[e0:e1],
            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        EXCEPTION WHEN unique_violation THEN
          v_out := v_out || ROW(p_i[j], 'error', NULL, NULL, NULL, SQLERRM)::eventstore_outcome;
        END;
      END;
      e0 := e1 + 1;
    END LOOP;
    a0 := p_a_end[st] + 1;
  END LOOP;
  RETURN QUERY SELECT * FROM unnest(v_out);
END
$fn$;
`);
};

export const down = (pgm: MigrationBuilder): void => {
  pgm.sql(`
DROP FUNCTION IF EXISTS eventstore_append_v2(text[], int[], int[], int[], int[], int[], text[], int[], bigint[], int[], int[], int[], uuid[], text[], int[], jsonb[], jsonb[], text[], text[], int[], int[], int[], int[], text[], int[], int[]);
DROP FUNCTION IF EXISTS eventstore_append_step_v2(text, int, int[], text[], int[], bigint[], int[], int[], int[], uuid[], text[], int[], jsonb[], jsonb[], text[], text[], int[], int[], int[], int[], text[], int[], int[]);
`);
};
