import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_PROJECTION_WRITER_ROLE, DEFAULT_QUERY_ROLE, PROJECTION_TABLES } from '../hub/eventstore/roles.ts';
import { createTestDatabase, type TestDatabase } from './testing.ts';

/**
 * The RLS story of the read side, read from the catalog (pg_class, pg_roles, pg_policies), after
 * the projector has created a partition and a rebuild shadow exists (docs/projections.md).
 */
describe('projections - catalog', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase('catalog');
    // a partition, created the way the projector does, so partitions are checked too
    await db.pool.query(`BEGIN; SET LOCAL ROLE ${DEFAULT_PROJECTION_WRITER_ROLE}; SELECT readmodel_ensure_partition_of('audit_log', now()); COMMIT`);
  });
  after(async () => db?.drop());

  it('should force RLS on every table and partition that has an org_id column', async () => {
    const { rows } = await db.pool.query<{ relname: string; relkind: string; relrowsecurity: boolean; relforcerowsecurity: boolean }>(
      `SELECT c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attname = 'org_id' AND NOT a.attisdropped`,
    );
    const names = rows.map((r) => r.relname);
    // positive control: the read models and a partition are in the list being checked
    for (const t of ['orgs', 'devices', 'sessions', 'audit_log', 'device_commands', 'projection_dead_letters', 'events']) assert.ok(names.includes(t), `${t} has org_id`);
    assert.ok(rows.some((r) => /^audit_log_\d{4}_\d{2}$/.test(r.relname)), 'a month partition exists');
    for (const r of rows) assert.ok(r.relrowsecurity && r.relforcerowsecurity, `${r.relname}: ENABLE ${r.relrowsecurity} FORCE ${r.relforcerowsecurity}`);
  });

  it('should give the query role no superuser, no BYPASSRLS, no tenant table and only SELECT on the read models', async () => {
    const { rows: role } = await db.pool.query('SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1', [DEFAULT_QUERY_ROLE]);
    assert.deepEqual(role, [{ rolsuper: false, rolbypassrls: false }]);
    const { rows: owned } = await db.pool.query(`SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = $1`, [DEFAULT_QUERY_ROLE]);
    assert.deepEqual(owned, []);
    const { rows: privs } = await db.pool.query(
      `SELECT table_name, privilege_type FROM information_schema.role_table_grants WHERE grantee = $1 AND table_schema = 'public' ORDER BY 1, 2`,
      [DEFAULT_QUERY_ROLE],
    );
    assert.deepEqual(privs.map((p) => `${p.table_name}:${p.privilege_type}`), ['audit_log:SELECT', 'device_commands:SELECT', 'devices:SELECT', 'orgs:SELECT', 'sessions:SELECT']);
  });

  it('should give the writer role no BYPASSRLS and privileges only on the projection tables, and no read of events', async () => {
    const { rows: role } = await db.pool.query('SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1', [DEFAULT_PROJECTION_WRITER_ROLE]);
    assert.deepEqual(role, [{ rolsuper: false, rolbypassrls: false }]);
    const { rows: privs } = await db.pool.query(
      `SELECT DISTINCT table_name FROM information_schema.role_table_grants WHERE grantee = $1 AND table_schema = 'public' ORDER BY 1`,
      [DEFAULT_PROJECTION_WRITER_ROLE],
    );
    assert.deepEqual(privs.map((p) => p.table_name), [...PROJECTION_TABLES].sort());
    await assert.rejects(db.pool.query(`BEGIN; SET LOCAL ROLE ${DEFAULT_PROJECTION_WRITER_ROLE}; SELECT 1 FROM events LIMIT 1`), /permission denied/);
    await db.pool.query('ROLLBACK');
  });

  it('should let the writer through only by its own policy: other roles with no org set see nothing', async () => {
    const org = 'cat-org';
    await db.pool.query(
      `BEGIN; SET LOCAL ROLE ${DEFAULT_PROJECTION_WRITER_ROLE};
       INSERT INTO orgs (org_id, id, first_event_at, last_event_at) VALUES ('${org}', '${org}', now(), now()); COMMIT`,
    );
    const c = await db.pool.connect();
    try {
      await c.query(`BEGIN; SET LOCAL ROLE ${DEFAULT_QUERY_ROLE}`);
      assert.equal((await c.query('SELECT count(*)::int AS n FROM orgs')).rows[0].n, 0, 'no org set: nothing');
      await c.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
      assert.equal((await c.query('SELECT count(*)::int AS n FROM orgs')).rows[0].n, 1, 'positive control: its own org');
      await c.query(`SELECT set_config('app.org_id', 'someone-else', true)`);
      assert.equal((await c.query('SELECT count(*)::int AS n FROM orgs')).rows[0].n, 0, 'another org: nothing');
      await assert.rejects(c.query(`INSERT INTO orgs (org_id, id, first_event_at, last_event_at) VALUES ('x', 'x', now(), now())`), /permission denied/);
    } finally {
      await c.query('ROLLBACK').catch(() => {});
      c.release();
    }
  });

  it('should refuse the drop function for anything but an audit_log partition', async () => {
    await assert.rejects(db.pool.query(`BEGIN; SET LOCAL ROLE ${DEFAULT_PROJECTION_WRITER_ROLE}; SELECT readmodel_drop_audit_partition('events', now())`), /not a partition of audit_log/);
    await db.pool.query('ROLLBACK');
    await assert.rejects(db.pool.query(`BEGIN; SET LOCAL ROLE ${DEFAULT_PROJECTION_WRITER_ROLE}; SELECT readmodel_ensure_partition_of('events', now())`), /not a partitioned read model/);
    await db.pool.query('ROLLBACK');
  });
});
