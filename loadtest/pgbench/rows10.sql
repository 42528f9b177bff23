-- Cost of the rows alone: 10 event rows of one org in one plain INSERT ... SELECT into `events`, as
-- the app role under RLS, with every index of the table; compare with empty.sql (the same
-- transaction around nothing). Run without waiting for the WAL flush, to time the CPU side:
--   PGOPTIONS="-c synchronous_commit=off" pgbench -h 127.0.0.1 -U postgres -n -c 1 -T 5 -f loadtest/pgbench/rows10.sql orghub
\set org random(0, 7)
BEGIN;
SET LOCAL ROLE orghub_app;
SELECT set_config('app.org_id', 'pgbench-' || :org, true);
INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata)
SELECT 'pgbench-' || :org, 'x-' || :client_id || '-' || g || '-' || (random()*1e9)::bigint, 0, gen_random_uuid(), 'bench.event', 1, jsonb_build_object('c', :client_id), jsonb_build_object('actor', 'bench', 'node', 'bench') FROM generate_series(0, 9) g;
COMMIT;
