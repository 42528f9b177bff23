import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pg from 'pg';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import type { EventStore } from '../hub/eventstore/eventStore.ts';
import { DEFAULT_PROJECTION_WRITER_ROLE } from '../hub/eventstore/roles.ts';
import { createLogger } from '../hub/log.ts';
import { testOrg } from '../hub/testing/hubProcess.ts';
import { auditLogProjection } from './audit/auditProjection.ts';
import { createPgEventReader } from './pgEventReader.ts';
import { startProjectionRunner } from './runner.ts';
import { createTestDatabase, waitUntil, type TestDatabase } from './testing.ts';

/**
 * audit_log writes two batches at a time (independentBatches, runner.ts). The risky moment is a
 * batch that needs a new month partition while the batch before or after it is open: both must
 * still finish without a lock wait between them (which would end in the pipeline's lock timeout
 * and a restart) and write every row exactly once.
 */
describe('projections - pipelined batches', () => {
  let db: TestDatabase;
  let store: EventStore;
  before(async () => {
    db = await createTestDatabase('pipe');
    store = createPostgresEventStore({ databaseUrl: db.url });
  });
  after(async () => {
    await store?.close();
    await db?.drop();
  });

  it('should write every audit row once across new month partitions, without a restart', async () => {
    const org = testOrg('pipe');
    const total = 600;
    // Months change every 25 events, cycling through six: the first 150 events need a new
    // partition every 25 events, with batches of 20 always straddling one.
    await db.pool.query(
      `INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, recorded_at)
       SELECT $1, 'audit', g, gen_random_uuid(), 'audit.publish.denied', 1, jsonb_build_object('topic', 'devices/d/t' || g, 'transport', 'ws'),
              jsonb_build_object('actor', 'd' || (g % 7)), timestamptz '2026-01-15T00:00:00Z' + ((g / 25) % 6) * interval '1 month' + g * interval '1 s'
       FROM generate_series(1, $2::int) g`,
      [org, total],
    );
    const lines: string[] = [];
    const log = createLogger('info', new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } }));
    const pool = new pg.Pool({ connectionString: db.url, max: 3 });
    const reader = createPgEventReader({ databaseUrl: db.url });
    const runner = startProjectionRunner({
      store, pool, databaseUrl: db.url, writerRole: DEFAULT_PROJECTION_WRITER_ROLE, projection: auditLogProjection,
      batchSize: 20, pollMs: 20, lockPollMs: 100, log, read: reader.read,
    });
    try {
      await waitUntil('audit_log caught up', async () => {
        const { rows } = await db.pool.query(`SELECT events_applied::int AS n FROM projection_checkpoints WHERE name = 'audit_log'`);
        return rows[0]?.n === total;
      }, 60000, 50);
    } finally {
      await runner.stop();
      await reader.close();
      await pool.end();
    }
    const restarts = lines.filter((l) => l.includes('projection restarting'));
    assert.deepEqual(restarts, [], 'no batch failed (no lock timeout, no checkpoint conflict)');
    assert.ok(lines.some((l) => l.includes('projection active')), 'the runner ran (positive control of the log capture)');
    const rows = (await db.pool.query(
      `SELECT tableoid::regclass::text AS part, count(*)::int AS n, count(DISTINCT id)::int AS d FROM audit_log WHERE org_id = $1 GROUP BY 1 ORDER BY 1`, [org],
    )).rows;
    assert.deepEqual(rows.map((r) => r.part), ['audit_log_2026_01', 'audit_log_2026_02', 'audit_log_2026_03', 'audit_log_2026_04', 'audit_log_2026_05', 'audit_log_2026_06']);
    assert.equal(rows.reduce((a, r) => a + r.n, 0), total, 'one row per event');
    assert.ok(rows.every((r) => r.n === r.d && r.n === 100), JSON.stringify(rows));
    const cp = (await db.pool.query(`SELECT dead_letters::int AS d FROM projection_checkpoints WHERE name = 'audit_log'`)).rows[0];
    assert.equal(cp.d, 0);
  });
});
