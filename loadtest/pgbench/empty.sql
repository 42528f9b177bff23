-- The transaction of rows10.sql around nothing: the per-transaction floor (round trips, role switch).
--   PGOPTIONS="-c synchronous_commit=off" pgbench -h 127.0.0.1 -U postgres -n -c 1 -T 5 -f loadtest/pgbench/empty.sql orghub
BEGIN;
SET LOCAL ROLE orghub_app;
SELECT 1;
COMMIT;
