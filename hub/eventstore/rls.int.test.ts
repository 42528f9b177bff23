import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { migrate } from './migrate.ts';
import { createPostgresEventStore } from './postgresEventStore.ts';
import { DEFAULT_APP_ROLE } from './roles.ts';
import type { EventStore } from './eventStore.ts';

const appRole = process.env.ORGHUB_DATABASE_APP_ROLE || DEFAULT_APP_ROLE;

describe('event store RLS', () => {
  let pool: pg.Pool;
  let store: EventStore;
  const orgA = `rlsa${randomUUID().slice(0, 8)}`;
  const orgB = `rlsb${randomUUID().slice(0, 8)}`;

  before(async () => {
    await migrate({ quiet: true });
    pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub', max: 2 });
    store = createPostgresEventStore({ databaseUrl: process.env.DATABASE_URL });
    await store.appendToStream(orgA, 'device-1', [{ type: 'a', data: 1, metadata: { actor: 'u' } }]);
    await store.appendToStream(orgB, 'device-1', [{ type: 'b', data: 2, metadata: { actor: 'u' } }]);
  });
  after(async () => {
    await store.close();
    await pool.end();
  });

  /** Runs `fn` as the app role, with app.org_id = org when given, and rolls back. */
  async function asApp<T>(org: string | undefined, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await pool.connect();
    try {
      await c.query(`BEGIN; SET LOCAL ROLE ${appRole}`);
      if (org !== undefined) await c.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
      return await fn(c);
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  }

  it('rls - with org A set, a session should see only A events and none of B', async () => {
    const rows = await asApp(orgA, async (c) => (await c.query<{ org_id: string }>('SELECT org_id FROM events')).rows);
    assert.ok(rows.length >= 1);
    assert.ok(rows.every((r) => r.org_id === orgA));
    const b = await asApp(orgA, async (c) => (await c.query('SELECT 1 FROM events WHERE org_id = $1', [orgB])).rowCount);
    assert.equal(b, 0);
    const streams = await asApp(orgA, async (c) => (await c.query<{ org_id: string }>('SELECT org_id FROM streams')).rows);
    assert.ok(streams.every((r) => r.org_id === orgA));
  });

  it('rls - with no org set, a session should see nothing', async () => {
    assert.equal(await asApp(undefined, async (c) => (await c.query('SELECT 1 FROM events')).rowCount), 0);
    assert.equal(await asApp(undefined, async (c) => (await c.query('SELECT 1 FROM streams')).rowCount), 0);
    // an empty setting (what RESET leaves behind) is no better
    assert.equal(await asApp('', async (c) => (await c.query('SELECT 1 FROM events')).rowCount), 0);
  });

  it('rls - inserting a row for org B while org A is set should be refused', async () => {
    await assert.rejects(
      asApp(orgA, (c) =>
        c.query(`INSERT INTO events (org_id, stream_id, stream_position, event_id, type, data, metadata) VALUES ($1, 's', 0, $2, 't', '{}', '{}')`, [orgB, randomUUID()]),
      ),
      /row-level security/,
    );
    await assert.rejects(asApp(orgA, (c) => c.query(`INSERT INTO streams (org_id, stream_id, version) VALUES ($1, 's', 0)`, [orgB])), /row-level security/);
  });

  it('rls - the app role should not update or delete events', async () => {
    await assert.rejects(asApp(orgA, (c) => c.query('DELETE FROM events')), /permission denied/);
    await assert.rejects(asApp(orgA, (c) => c.query(`UPDATE events SET type = 'x'`)), /permission denied/);
  });

  it('rls - the app role should be no superuser, have no BYPASSRLS and own no table', async () => {
    const role = (await pool.query<{ rolsuper: boolean; rolbypassrls: boolean }>('SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1', [appRole])).rows[0];
    assert.ok(role, `role ${appRole} exists`);
    assert.equal(role.rolsuper, false);
    assert.equal(role.rolbypassrls, false);
    const owned = await pool.query('SELECT tablename FROM pg_tables WHERE tableowner = $1', [appRole]);
    assert.equal(owned.rowCount, 0);
    const forced = (await pool.query<{ relname: string; relrowsecurity: boolean; relforcerowsecurity: boolean }>(
      `SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname IN ('events', 'streams') AND relkind = 'r'`,
    )).rows;
    assert.equal(forced.length, 2);
    for (const t of forced) assert.ok(t.relrowsecurity && t.relforcerowsecurity, `${t.relname} has ENABLE + FORCE RLS`);
  });
});
