import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { RecordedEvent } from '../../hub/eventstore/eventStore.ts';
import { DEFAULT_PROJECTION_WRITER_ROLE } from '../../hub/eventstore/roles.ts';
import { LIVE, applyBatch, type Target } from '../apply.ts';
import { SHADOW_SUFFIX, createShadowTable, shadowName } from '../shadow.ts';
import { createTestDatabase, tableHash, type TestDatabase } from '../testing.ts';
import { recorded } from '../testEvents.ts';
import { sessionsProjection } from './sessionsProjection.ts';

const at = (s: number) => new Date(Date.UTC(2026, 10, 30, 10, 0, s)).toISOString();
const connect = (org: string, session: string, actor: string, s: number, data: Record<string, unknown> = {}) =>
  recorded(org, 'audit', 'audit.session.connected', { transport: 'mqtt', roles: actor.startsWith('d') ? ['device'] : ['admin'], ...data }, { actor, session, node: 'n1' }, at(s));
const disconnect = (org: string, session: string, actor: string, s: number) =>
  recorded(org, 'audit', 'audit.session.disconnected', { transport: 'mqtt', reason: 'bye', durationMs: 1000 }, { actor, session, node: 'n1' }, at(s));

/**
 * The sessions projection keeps devices incrementally (least/greatest, open-session count moved by
 * each session's open-before/open-after): the result must not depend on how the log is cut into
 * batches, nor change when a batch is applied twice. Same events, one per transaction into the
 * live tables and all in one batch into shadow tables: equal hashes, and the expected values.
 */
describe('projections - sessions and devices, incrementally', () => {
  let db: TestDatabase;
  const A = `sessA_${process.pid}`;
  const B = `sessB_${process.pid}`;
  const events: RecordedEvent[] = [
    connect(A, 's1', 'd1', 0, { clientId: 'c1' }),
    connect(A, 's2', 'd1', 1, { transport: 'ws' }),
    connect(A, 's3', 'alice', 2),
    disconnect(A, 's1', 'd1', 3),
    connect(B, 's1', 'd1', 4, { clientId: 'b1' }),
    connect(A, 's4', 'd2', 5),
    disconnect(A, 's2', 'd1', 6),
    disconnect(A, 's9', 'd1', 7), // its connect was never recorded: no device known
    connect(A, 's5', 'd1', 8, { clientId: 'c5' }),
    disconnect(A, 's4', 'd2', 9),
    connect(A, 's6', 'd2', 10),
  ];
  const shadow: Target = { table: (t) => (sessionsProjection.tables.includes(t) ? shadowName(t) : t), partitionParent: `audit_log${SHADOW_SUFFIX}` };

  async function apply(c: pg.PoolClient, batch: RecordedEvent[], target: Target) {
    await c.query(`BEGIN; SET LOCAL ROLE ${DEFAULT_PROJECTION_WRITER_ROLE}`);
    const out = await applyBatch(c, sessionsProjection, batch, target, new Set());
    await c.query('COMMIT');
    assert.equal(out.deadLetters, 0);
  }

  before(async () => {
    db = await createTestDatabase('sessions');
    const c = await db.pool.connect();
    try {
      for (const e of events) await apply(c, [e], LIVE);
      for (const t of sessionsProjection.tables) await createShadowTable(c, t);
      await apply(c, events, shadow);
    } finally {
      c.release();
    }
  });
  after(async () => {
    await db?.drop();
  });

  const devices = (table: string) =>
    db.pool.query(`SELECT org_id, id, first_seen, last_seen, online, open_sessions, current_session, transport, client_id FROM ${table} ORDER BY org_id, id`).then((r) => r.rows);

  it('should give every device its first and last sight, open sessions, current session and latest transport', async () => {
    assert.deepEqual(
      (await devices('devices')).map((d) => [d.org_id, d.id, d.first_seen.toISOString(), d.last_seen.toISOString(), d.online, d.open_sessions, d.current_session, d.transport, d.client_id]),
      [
        [A, 'd1', at(0), at(8), true, 1, 's5', 'mqtt', 'c5'],
        [A, 'd2', at(5), at(10), true, 1, 's6', 'mqtt', null],
        [B, 'd1', at(4), at(4), true, 1, 's1', 'mqtt', 'b1'],
      ],
    );
    // The count is the number of open sessions the sessions table holds (positive control: some are closed).
    const { rows } = await db.pool.query(`SELECT org_id, device_id, count(*) FILTER (WHERE disconnected_at IS NULL)::int AS open, count(*)::int AS n FROM sessions WHERE device_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2`);
    assert.deepEqual(rows.map((r) => [r.org_id, r.device_id, r.open, r.n]), [[A, 'd1', 1, 3], [A, 'd2', 1, 2], [B, 'd1', 1, 1]]);
  });

  it('should build the same tables one event per batch as in one batch', async () => {
    for (const t of sessionsProjection.tables) {
      const live = await tableHash(db.pool, t, [A, B]);
      const rebuilt = await tableHash(db.pool, shadowName(t), [A, B]);
      assert.ok(live.rows > 0, `${t} has rows`);
      assert.deepEqual(rebuilt, live, t);
    }
  });

  it('should change nothing when batches are applied again, and move a device offline when its last session ends', async () => {
    const before = await tableHash(db.pool, 'devices', [A, B]);
    const c = await db.pool.connect();
    try {
      await apply(c, events.slice(0, 6), LIVE);
      await apply(c, events, LIVE);
      assert.deepEqual(await tableHash(db.pool, 'devices', [A, B]), before);
      await apply(c, [disconnect(A, 's6', 'd2', 11)], LIVE);
    } finally {
      c.release();
    }
    const d2 = (await devices('devices')).find((d) => d.org_id === A && d.id === 'd2');
    assert.deepEqual([d2.online, d2.open_sessions, d2.current_session, d2.last_seen.toISOString()], [false, 0, null, at(11)]);
  });
});
