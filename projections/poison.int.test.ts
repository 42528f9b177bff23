import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import type { EventStore } from '../hub/eventstore/eventStore.ts';
import { testOrg } from '../hub/testing/hubProcess.ts';
import { readProjectionLag } from './status.ts';
import { createTestDatabase, startProjector, waitUntil, type ProjectorProcess, type TestDatabase } from './testing.ts';

/**
 * Poison: an event the fold refuses (bad shape) and one whose row Postgres refuses (an int out of
 * range, caught by the per-event savepoint fallback) land in projection_dead_letters with their
 * position and error; the events after them are still projected, and the counter shows them.
 */
describe('projections - poison', () => {
  let db: TestDatabase;
  let store: EventStore;
  let projector: ProjectorProcess;
  before(async () => {
    db = await createTestDatabase('poison');
    store = createPostgresEventStore({ databaseUrl: db.url });
    projector = startProjector(db.url);
  });
  after(async () => {
    await projector?.stop();
    await store?.close();
    await db?.drop();
  });

  it('should dead-letter the events a handler rejects and project the ones after them', async () => {
    const org = testOrg('poison');
    const meta = { actor: 'd1', session: 's1' };
    const r = await store.appendToStream(org, 'audit', [
      { type: 'audit.session.connected', data: { transport: 'ws', roles: ['device'] }, metadata: meta },
      { type: 'audit.publish.denied', data: 'not-an-object', metadata: meta },
      { type: 'audit.session.disconnected', data: { transport: 'ws', code: 1e12, reason: 'x' }, metadata: meta },
      { type: 'audit.publish.denied', data: { topic: 'devices/x/y' }, metadata: meta },
    ]);
    await store.appendToStream(org, 'audit', [{ type: 'audit.session.connected', data: { transport: 'ws', roles: ['device'] }, metadata: { actor: 'd2', session: 's2' } }]);
    const [, badShape, badRow] = r.ids;

    const q = (sql: string) => db.pool.query(sql, [org]).then((x) => x.rows);
    await waitUntil('events after the poison projected', async () => (await q(`SELECT 1 FROM sessions WHERE org_id = $1 AND id = 's2'`)).length === 1 && (await q(`SELECT 1 FROM audit_log WHERE org_id = $1 AND topic = 'devices/x/y'`)).length === 1);
    const dead = await q(`SELECT projection, event_id, type, global_position::text AS pos, position_tx::text AS tx, error FROM projection_dead_letters WHERE org_id = $1 ORDER BY projection`);
    assert.deepEqual(dead.map((d) => [d.projection, d.event_id, d.type]), [
      ['audit_log', badShape, 'audit.publish.denied'],
      ['sessions', badRow, 'audit.session.disconnected'],
    ]);
    assert.match(dead[0].error, /audit data must be a JSON object/);
    assert.match(dead[1].error, /out of range/);
    assert.equal(dead[0].pos, String(r.positions[1]));
    assert.ok(Number(dead[0].tx) > 0);
    // positive controls: the good events around the poison are all there
    assert.equal((await q(`SELECT count(*)::int AS n FROM audit_log WHERE org_id = $1`))[0].n, 4, 'every audit event but the bad shape');
    assert.deepEqual(await q(`SELECT id, connected_at IS NOT NULL AS c, disconnected_at IS NULL AS open FROM sessions WHERE org_id = $1 ORDER BY id`), [
      { id: 's1', c: true, open: true },
      { id: 's2', c: true, open: true },
    ]);
    const lag = await waitUntil('lag read shows the counters', async () => {
      const l = await readProjectionLag(db.pool, 5);
      return l.every((x) => x.behindEvents === 0) && l;
    });
    assert.deepEqual(Object.fromEntries(lag.map((l) => [l.name, l.deadLetters])), { orgs: 0, audit_log: 1, sessions: 1, device_commands: 0 });
    assert.ok(projector.output().includes('events dead-lettered'));
  });
});
