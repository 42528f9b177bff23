-- pgbench baseline for the event store: one transaction of 10 single-event appends, sent exactly as the
-- Postgres adapter's group commit sends a batch of 10: the same role switch and ONE call of the same
-- eventstore_append_v2() function, here with 10 ANY appends of one event each to 10 streams of one org,
-- no idempotency key (like loadtest/appendBench.ts). Arguments, as hub/eventstore/pgAppend.ts builds them:
-- steps (orgs, flags, append / event / stream ends), appends (batch index, stream, kind, expected, count),
-- events (append, order, id, type, schema version, data, metadata, key), then the lean ANY layout
-- (distinct streams in byte order, their totals; per append: stream index, offset, first event;
-- per event: stream, stream index, offset). 'pgb-<client>-0' .. '-9' sort in byte order as written.
--   pgbench -h 127.0.0.1 -U postgres -n -c 8 -j 2 -T 10 -f loadtest/pgbench/append10.sql orghub
-- events/s = reported tps x 10.
-- loadtest/pgbench/append10-calls.sql makes the same 10 appends as 10 one-append calls (one statement each).
\set org random(0, 7)
BEGIN;
SET LOCAL ROLE orghub_app;
SELECT count(*) FROM eventstore_append_v2(ARRAY['pgbench-' || :org], '{0}', '{10}', '{10}', '{10}',
  '{0,1,2,3,4,5,6,7,8,9}', ARRAY(SELECT 'pgb-' || :client_id || '-' || g FROM generate_series(0, 9) g), '{0,0,0,0,0,0,0,0,0,0}',
  '{NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL}', '{1,1,1,1,1,1,1,1,1,1}',
  '{0,1,2,3,4,5,6,7,8,9}', '{0,0,0,0,0,0,0,0,0,0}', ARRAY(SELECT gen_random_uuid() FROM generate_series(0, 9)),
  '{bench.event,bench.event,bench.event,bench.event,bench.event,bench.event,bench.event,bench.event,bench.event,bench.event}',
  '{1,1,1,1,1,1,1,1,1,1}', ARRAY(SELECT jsonb_build_object('c', :client_id) FROM generate_series(0, 9)),
  ARRAY(SELECT jsonb_build_object('actor', 'bench', 'node', 'bench') FROM generate_series(0, 9)),
  '{NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL}',
  ARRAY(SELECT 'pgb-' || :client_id || '-' || g FROM generate_series(0, 9) g), '{1,1,1,1,1,1,1,1,1,1}',
  '{1,2,3,4,5,6,7,8,9,10}', '{0,0,0,0,0,0,0,0,0,0}', '{1,2,3,4,5,6,7,8,9,10}',
  ARRAY(SELECT 'pgb-' || :client_id || '-' || g FROM generate_series(0, 9) g), '{1,2,3,4,5,6,7,8,9,10}', '{0,0,0,0,0,0,0,0,0,0}');
COMMIT;
