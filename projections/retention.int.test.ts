import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { DEFAULT_PROJECTION_WRITER_ROLE } from '../hub/eventstore/roles.ts';
import { testOrg } from '../hub/testing/hubProcess.ts';
import { sweepRetention } from './retention.ts';
import { createTestDatabase, type TestDatabase } from './testing.ts';

/** Retention: old month partitions are dropped, shorter per-org retentions trimmed, everything else kept. */
describe('projections - retention', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase('retention');
  });
  after(async () => db?.drop());

  it('should drop months past every retention and trim an org with a shorter one, keeping the rest', async () => {
    const [keep, short] = [testOrg('rk'), testOrg('rs')];
    const now = new Date('2026-11-30T12:00:00Z');
    const daysAgo = (d: number) => new Date(now.getTime() - d * 86_400_000).toISOString();
    const c = await db.pool.connect();
    try {
      await c.query(`BEGIN; SET LOCAL ROLE ${DEFAULT_PROJECTION_WRITER_ROLE}`);
      await c.query(`INSERT INTO orgs (org_id, id, audit_retention_days, first_event_at, last_event_at) VALUES ($1, $1, 90, now(), now()), ($2, $2, 30, now(), now())`, [keep, short]);
      const rows: Array<[string, string]> = [[keep, daysAgo(150)], [keep, daysAgo(40)], [keep, daysAgo(1)], [short, daysAgo(40)], [short, daysAgo(35)], [short, daysAgo(1)]];
      for (const [, at] of rows) await c.query('SELECT readmodel_ensure_partition_of($1, $2)', ['audit_log', at]);
      for (const [org, at] of rows) {
        await c.query(
          `INSERT INTO audit_log (org_id, id, recorded_at, global_position, type, actor, outcome, data) VALUES ($1, $2, $3, 1, 'limit.hit', 'a', 'limited', '{}')`,
          [org, randomUUID(), at],
        );
      }
      await c.query('COMMIT');
      const oldMonth = `audit_log_${daysAgo(150).slice(0, 7).replace('-', '_')}`;
      assert.ok((await c.query('SELECT to_regclass($1) AS r', [oldMonth])).rows[0].r, 'positive control: the old partition exists');

      const r = await sweepRetention(c, DEFAULT_PROJECTION_WRITER_ROLE, 1, now);
      assert.deepEqual(r.droppedPartitions, [oldMonth]);
      assert.equal(r.trimmedRows, 2);
      assert.equal((await c.query('SELECT to_regclass($1) AS r', [oldMonth])).rows[0].r, null);
      const left = await c.query(`SELECT org_id, round(extract(epoch FROM ($3::timestamptz - recorded_at)) / 86400)::int AS days FROM audit_log WHERE org_id = ANY(ARRAY[$1, $2]) ORDER BY 1, 2`, [keep, short, now.toISOString()]);
      assert.deepEqual(left.rows.map((x) => `${x.org_id === keep ? 'keep' : 'short'}:${x.days}`).sort(), ['keep:1', 'keep:40', 'short:1']);
      // a second sweep finds nothing more to do
      assert.deepEqual(await sweepRetention(c, DEFAULT_PROJECTION_WRITER_ROLE, 1, now), { droppedPartitions: [], trimmedRows: 0 });
    } finally {
      c.release();
    }
  });
});
