import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate, retryCatalogRace } from './migrate.ts';
import { clusterRoleSql } from './roles.ts';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const CONNECTIONS = 16;

/**
 * Roles live in the cluster, not in a database: the migrators of several databases (one per parallel
 * test file, or several services' databases on one cluster) assert the same roles at the same time,
 * and an advisory lock taken in one database does not stop another. Each connection here stands for
 * one such migrator.
 */
describe('role SQL run by concurrent migrators', () => {
  const tag = randomBytes(4).toString('hex');
  const roles = { app: `rt_app_${tag}`, proj: `rt_proj_${tag}`, query: `rt_query_${tag}`, writer: `rt_writer_${tag}` };
  const clients: pg.Client[] = [];

  before(async () => {
    await migrate({ quiet: true });
    for (let i = 0; i < CONNECTIONS; i++) {
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      clients.push(c);
    }
  });
  after(async () => {
    const c = clients[0];
    if (c) {
      for (const r of Object.values(roles)) await c.query(`DROP ROLE IF EXISTS ${r}`).catch(() => {});
    }
    await Promise.all(clients.map((x) => x.end()));
  });

  // The cluster-level part of the role SQL (the per-database grants are serialised by migrate()'s
  // advisory lock); run on one database here, which is the same catalog as any other.
  const sql = [
    clusterRoleSql(roles.app, { bypassRls: false }),
    clusterRoleSql(roles.proj, { bypassRls: true }),
    clusterRoleSql(roles.query, { bypassRls: false }),
    clusterRoleSql(roles.writer, { bypassRls: false }),
  ].join('\n');
  const both = (c: pg.Client) => c.query(sql);

  it('creates missing roles once, whoever wins, and asserts existing ones without writing the catalog', async () => {
    const before = await clients[0]!.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ANY($1)`, [Object.values(roles)]);
    assert.equal(before.rows[0]!.n, 0);

    // First run: every migrator finds the roles missing; the losers of CREATE ROLE retry.
    await Promise.all(clients.map((c) => retryCatalogRace(() => both(c))));
    const made = await clients[0]!.query<{ rolname: string; rolbypassrls: boolean; rolsuper: boolean }>(
      `SELECT rolname, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname`,
      [Object.values(roles)],
    );
    assert.deepEqual(
      made.rows.map((r) => [r.rolname, r.rolbypassrls, r.rolsuper]),
      [
        [roles.app, false, false],
        [roles.proj, true, false],
        [roles.query, false, false],
        [roles.writer, false, false],
      ].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );

    // Steady state, no retry: the roles are right, so no migrator writes pg_authid and none can
    // fail with 'tuple concurrently updated' (an unconditional ALTER ROLE did, a few in 16).
    for (let round = 0; round < 5; round++) {
      const results = await Promise.allSettled(clients.map((c) => both(c)));
      const failed = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
      assert.deepEqual(failed, [], `round ${round}`);
    }

    // A role that drifted (BYPASSRLS given by hand) is pinned back by the next migrator.
    await clients[0]!.query(`ALTER ROLE ${roles.app} BYPASSRLS`);
    await Promise.all(clients.map((c) => retryCatalogRace(() => both(c))));
    const pinned = await clients[0]!.query<{ rolbypassrls: boolean }>(`SELECT rolbypassrls FROM pg_roles WHERE rolname = $1`, [roles.app]);
    assert.equal(pinned.rows[0]!.rolbypassrls, false);
  });

  it('retries a catalog race and nothing else', async () => {
    let calls = 0;
    const raced = await retryCatalogRace(async () => {
      calls++;
      if (calls < 3) throw Object.assign(new Error('tuple concurrently updated'), { code: 'XX000' });
      return 'done';
    });
    assert.equal(raced, 'done');
    assert.equal(calls, 3);

    calls = 0;
    await assert.rejects(
      retryCatalogRace(async () => {
        calls++;
        throw Object.assign(new Error('permission denied'), { code: '42501' });
      }),
      /permission denied/,
    );
    assert.equal(calls, 1);
  });
});
