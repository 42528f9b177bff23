import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import type { EventStore } from '../hub/eventstore/eventStore.ts';
import { testOrg } from '../hub/testing/hubProcess.ts';
import { PROJECTIONS } from './registry.ts';
import { createTestDatabase, startProjector, waitUntil, type ProjectorProcess, type TestDatabase } from './testing.ts';

/** Failover: two projector processes; the standby takes every projection over within 5 s of the active one's kill -9. */
describe('projections - failover', () => {
  let db: TestDatabase;
  let store: EventStore;
  const procs: ProjectorProcess[] = [];
  before(async () => {
    db = await createTestDatabase('failover');
    store = createPostgresEventStore({ databaseUrl: db.url });
  });
  after(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    await store?.close();
    await db?.drop();
  });

  const holders = async () =>
    (await db.pool.query(
      `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND a.application_name LIKE 'orghub-projector:%:lock:%'`,
    )).rows.map((r) => r.application_name as string);

  it('should keep one active instance per projection and let the standby take over within 5 s', async () => {
    const org = testOrg('fo');
    const active = startProjector(db.url, { ORGHUB_PROJECTOR_LOCK_POLL_MS: '250' });
    procs.push(active);
    for (const p of PROJECTIONS) await active.waitForLog((l) => l.msg?.startsWith('projection active') && l.projection === p.name);
    const standby = startProjector(db.url, { ORGHUB_PROJECTOR_LOCK_POLL_MS: '250' });
    procs.push(standby);
    await standby.waitForLog((l) => l.msg === 'projector started');

    await store.appendToStream(org, 'audit', [{ type: 'audit.limit.hit', data: { limit: 'rate' }, metadata: { actor: 'a' } }]);
    const rows = async () => (await db.pool.query('SELECT count(*)::int AS n FROM audit_log WHERE org_id = $1', [org])).rows[0].n as number;
    await waitUntil('first event projected', async () => (await rows()) === 1);
    // One holder per projection, all in the first process; the standby holds nothing.
    const before = await holders();
    assert.equal(before.length, PROJECTIONS.length, JSON.stringify(before));
    assert.ok(before.every((h) => h.startsWith(`orghub-projector:${active.child.pid}:`)), JSON.stringify(before));
    assert.ok(!standby.output().includes('projection active'));

    const killedAt = Date.now();
    active.child.kill('SIGKILL');
    for (const p of PROJECTIONS) await standby.waitForLog((l) => l.msg?.startsWith('projection active') && l.projection === p.name, 10000);
    const tookOver = Date.now() - killedAt;
    assert.ok(tookOver < 5000, `standby took over after ${tookOver} ms`);
    const afterKill = await holders();
    assert.equal(afterKill.length, PROJECTIONS.length);
    assert.ok(afterKill.every((h) => h.startsWith(`orghub-projector:${standby.child.pid}:`)), JSON.stringify(afterKill));

    await store.appendToStream(org, 'audit', [{ type: 'audit.limit.hit', data: { limit: 'rate' }, metadata: { actor: 'a' } }]);
    await waitUntil('event after the takeover projected by the standby', async () => (await rows()) === 2);
  });
});
