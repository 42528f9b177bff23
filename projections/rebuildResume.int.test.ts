import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { testOrg } from '../hub/testing/hubProcess.ts';
import { createTestDatabase, runRebuild, startProjector, startRebuild, tableHash, waitUntil, type TestDatabase } from './testing.ts';

/**
 * A rebuild that dies resumes from the checkpoint its shadow tables were written with
 * (`projection_rebuilds`), instead of restarting from zero: the rebuild is killed with SIGKILL in
 * the middle, the shadow table then holds exactly the events its checkpoint counts, and the next
 * run continues from there and swaps in a table equal to the incrementally built one.
 */
describe('projections - resumable rebuild', () => {
  let db: TestDatabase;
  const org = testOrg('resume');
  const total = 80_000;
  before(async () => {
    db = await createTestDatabase('resume');
    await db.pool.query(
      `INSERT INTO events (org_id, stream_id, stream_position, event_id, type, schema_version, data, metadata, recorded_at)
       SELECT $1, 'audit', g, gen_random_uuid(), 'audit.publish.denied', 1, jsonb_build_object('topic', 'devices/d' || (g % 50) || '/t', 'transport', 'ws'),
              jsonb_build_object('actor', 'd' || (g % 50), 'session', 's' || (g % 500)), timestamptz '2026-11-01T00:00:00Z' + g * interval '1 s'
       FROM generate_series(1, $2::int) g`,
      [org, total],
    );
    const projector = startProjector(db.url, { ORGHUB_PROJECTOR_PROJECTIONS: 'audit_log', ORGHUB_PROJECTOR_BATCH: '5000' });
    try {
      await waitUntil('audit_log projected live', async () => (await db.pool.query(`SELECT events_applied::int AS n FROM projection_checkpoints WHERE name = 'audit_log'`)).rows[0]?.n === total, 120_000, 100);
    } finally {
      await projector.stop();
    }
  });
  after(async () => {
    await db?.drop();
  });

  const checkpoint = async () =>
    (await db.pool.query(`SELECT events_applied::int AS n FROM projection_rebuilds WHERE name = 'audit_log'`)).rows[0]?.n as number | undefined;

  it('should resume a killed rebuild from its checkpoint and swap in a table equal to the live one', async () => {
    const live = await tableHash(db.pool, 'audit_log', [org]);
    assert.equal(live.rows, total);

    const first = startRebuild(db.url, 'audit_log');
    await waitUntil('the first rebuild past its first batches', async () => ((await checkpoint()) ?? 0) >= 10_000, 60_000, 10);
    first.child.kill('SIGKILL');
    const killed = await first.done;
    assert.equal(killed.code, null, `killed mid-way, not finished: ${killed.stdout}`);
    const at = (await checkpoint())!;
    assert.ok(at > 0 && at < total, `killed in the middle (checkpoint at ${at} of ${total})`);
    const shadow = (await db.pool.query(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS d FROM audit_log__rebuild`)).rows[0];
    assert.deepEqual(shadow, { n: at, d: at }, 'the shadow holds exactly the events its checkpoint counts');

    const second = await runRebuild(db.url, 'audit_log');
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, new RegExp(`audit_log v\\d+: ${total} events \\(resumed after ${at} events written by an interrupted rebuild\\)`));
    assert.equal(await checkpoint(), undefined, 'the swap removed the rebuild checkpoint');
    assert.deepEqual(await tableHash(db.pool, 'audit_log', [org]), live, 'rebuilt table equals the live one: nothing applied twice or missed');
    const cp = (await db.pool.query(`SELECT events_applied::int AS n FROM projection_checkpoints WHERE name = 'audit_log'`)).rows[0];
    assert.equal(cp.n, total);

    // Control: with nothing to resume (and with --restart), a rebuild says nothing of resuming.
    const fresh = await runRebuild(db.url, 'audit_log', ['--restart']);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.match(fresh.stdout, new RegExp(`audit_log v\\d+: ${total} events in `));
    assert.deepEqual(await tableHash(db.pool, 'audit_log', [org]), live);
  });
});
