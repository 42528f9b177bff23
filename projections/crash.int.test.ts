// test-run: serial (timing assertions; scripts/test.mjs runs these one at a time after the rest)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import type { EventStore, NewEvent } from '../hub/eventstore/eventStore.ts';
import { testOrg } from '../hub/testing/hubProcess.ts';
import { readProjectionLag } from './status.ts';
import { createTestDatabase, startProjector, waitUntil, type TestDatabase } from './testing.ts';

/** Appends `n` mixed events for `org`: audit events and commands, in chunks. */
export async function appendMixed(store: EventStore, org: string, n: number): Promise<{ audit: number; commands: number }> {
  let audit = 0;
  let commands = 0;
  for (let i = 0; i < n; i += 250) {
    const k = Math.min(250, n - i);
    const a: NewEvent[] = [];
    const c: NewEvent[] = [];
    for (let j = 0; j < k; j++) {
      if ((i + j) % 5 === 0) c.push({ type: 'device.reboot', data: { reason: `r${i + j}` }, metadata: { actor: 'admin' } });
      else a.push({ type: 'audit.publish.denied', data: { topic: `devices/d${j % 7}/t`, transport: 'ws' }, metadata: { actor: `d${j % 7}`, session: `s${j % 3}` } });
    }
    await Promise.all([
      a.length ? store.appendToStream(org, 'audit', a) : undefined,
      c.length ? store.appendToStream(org, `commands:devices/d${i % 7}/commands`, c) : undefined,
    ]);
    audit += a.length;
    commands += c.length;
  }
  return { audit, commands };
}

/**
 * Crash: the projector is killed with SIGKILL while a batch transaction is open, then restarted.
 * Every event must be applied exactly once: the checkpoint counters equal the log, and the read
 * models hold exactly one row per event.
 */
describe('projections - crash', () => {
  let db: TestDatabase;
  let store: EventStore;
  before(async () => {
    db = await createTestDatabase('crash');
    store = createPostgresEventStore({ databaseUrl: db.url });
  });
  after(async () => {
    await store?.close();
    await db?.drop();
  });

  it('should apply no event twice and miss none after kill -9 in the middle of a batch', async () => {
    const orgs = [testOrg('crA'), testOrg('crB')];
    const expected: Record<string, { audit: number; commands: number }> = {};
    for (const org of orgs) expected[org] = await appendMixed(store, org, 3000);
    const total = 6000;

    const p1 = startProjector(db.url, { ORGHUB_PROJECTOR_BATCH: '25' });
    const pid = p1.child.pid!;
    // Kill while a batch transaction of the write pool is open, and before the end of the log.
    const open = await waitUntil('an open batch transaction', async () => {
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND xact_start IS NOT NULL AND state <> 'idle'`,
        [`orghub-projector:${pid}:write`],
      );
      const cps = await db.pool.query('SELECT min(events_applied)::int AS lo, count(*)::int AS k FROM projection_checkpoints');
      return rows[0].n > 0 && cps.rows[0].k === 4 && cps.rows[0].lo > 0 && cps.rows[0].lo < total && rows[0].n;
    }, 30000, 5);
    assert.ok(open > 0);
    p1.child.kill('SIGKILL');
    await p1.stop();
    const mid = (await db.pool.query('SELECT name, events_applied::int AS n FROM projection_checkpoints ORDER BY name')).rows;
    assert.ok(mid.some((r) => r.n < total), `killed before the end: ${JSON.stringify(mid)}`);

    // More events arrive while it is down.
    for (const org of orgs) {
      const more = await appendMixed(store, org, 250);
      expected[org].audit += more.audit;
      expected[org].commands += more.commands;
    }
    // While it is down, the lag the hub reports is visible (threshold 0 s: lagging).
    const down = await readProjectionLag(db.pool, 0);
    assert.ok(down.every((l) => l.behindEvents >= 500 && l.behindSeconds > 0 && l.lagging), JSON.stringify(down));
    const p2 = startProjector(db.url, { ORGHUB_PROJECTOR_BATCH: '25' });
    try {
      const head = (await db.pool.query('SELECT count(*)::int AS n FROM events')).rows[0].n;
      assert.equal(head, total + 500);
      await waitUntil('all projections caught up', async () => {
        const { rows } = await db.pool.query('SELECT events_applied::int AS n FROM projection_checkpoints');
        return rows.length === 4 && rows.every((r) => r.n >= head);
      }, 120_000, 100); // alone ~3 s; beside other suites on 2 cores, batches of 25 took over 40 s
      const cps = (await db.pool.query('SELECT name, events_applied::int AS n, dead_letters::int AS d FROM projection_checkpoints ORDER BY name')).rows;
      assert.deepEqual(cps, ['audit_log', 'device_commands', 'orgs', 'sessions'].map((name) => ({ name, n: head, d: 0 })), 'each event consumed exactly once');
      const up = await readProjectionLag(db.pool, 0);
      assert.ok(up.every((l) => l.behindEvents === 0 && l.behindSeconds === 0 && !l.lagging), JSON.stringify(up));
      for (const org of orgs) {
        const a = (await db.pool.query('SELECT count(*)::int AS n, count(DISTINCT global_position)::int AS d FROM audit_log WHERE org_id = $1', [org])).rows[0];
        const c = (await db.pool.query('SELECT count(*)::int AS n FROM device_commands WHERE org_id = $1', [org])).rows[0];
        assert.deepEqual({ audit: a.n, commands: c.n }, expected[org]);
        assert.equal(a.d, a.n);
      }
    } finally {
      await p2.stop();
    }
  });
});
