import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { HubError } from '../errors.ts';
import { migrate } from '../eventstore/migrate.ts';
import { DEFAULT_QUERY_ROLE, READ_MODEL_TABLES } from '../eventstore/roles.ts';
import { freePort, testOrg } from '../testing/hubProcess.ts';
import { createReadModelFixtures, type ReadModelFixtures } from '../testing/readModelFixtures.ts';
import { createPostgresReadModels } from './postgresReadModels.ts';
import type { ReadModels } from './readModels.ts';

const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const queryRole = process.env.ORGHUB_DATABASE_QUERY_ROLE || DEFAULT_QUERY_ROLE;

describe('postgres read models', () => {
  let fx: ReadModelFixtures;
  let rm: ReadModels;

  before(async () => {
    await migrate({ quiet: true });
    fx = createReadModelFixtures(databaseUrl);
    rm = createPostgresReadModels({ databaseUrl, queryRole, poolSize: 2 });
  });
  after(async () => {
    await rm.close();
    await fx.close();
  });

  it('catalog - the query role is no superuser, has no BYPASSRLS, owns nothing and may only SELECT the read models', async () => {
    const role = (await fx.pool.query('SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1', [queryRole])).rows[0];
    assert.ok(role, `role ${queryRole} exists`);
    assert.deepEqual(role, { rolsuper: false, rolbypassrls: false, rolcreaterole: false, rolcreatedb: false });
    const owned = await fx.pool.query(`SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = $1`, [queryRole]);
    assert.deepEqual(owned.rows, [], 'owns no relation');
    // Positive control: the owner does own the read models, so the ownership query can see ownership.
    const ownerOwned = await fx.pool.query(`SELECT count(*)::int AS n FROM pg_class c WHERE c.relname = ANY($1) AND pg_get_userbyid(c.relowner) = current_user`, [[...READ_MODEL_TABLES]]);
    assert.equal(ownerOwned.rows[0].n, READ_MODEL_TABLES.length);
    for (const t of READ_MODEL_TABLES) {
      const p = (await fx.pool.query(
        `SELECT has_table_privilege($1, $2, 'SELECT') AS s, has_table_privilege($1, $2, 'INSERT') AS i, has_table_privilege($1, $2, 'UPDATE') AS u,
                has_table_privilege($1, $2, 'DELETE') AS d, has_table_privilege($1, $2, 'TRUNCATE') AS t`,
        [queryRole, t],
      )).rows[0];
      assert.deepEqual(p, { s: true, i: false, u: false, d: false, t: false }, t);
      const rls = (await fx.pool.query('SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1', [t])).rows[0];
      assert.deepEqual(rls, { relrowsecurity: true, relforcerowsecurity: true }, t);
    }
    for (const t of ['events', 'streams', 'projection_checkpoints', 'projection_dead_letters']) {
      const s = (await fx.pool.query(`SELECT has_table_privilege($1, $2, 'SELECT') AS s`, [queryRole, t])).rows[0].s;
      assert.equal(s, false, `no SELECT on ${t}`);
    }
  });

  it('pool leak - on one pooled connection, a transaction after org A sees zero rows when no org is set', async () => {
    const org = testOrg('leak');
    await fx.device(org);
    await fx.audit(org);
    await fx.session(org);
    await fx.command(org);
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    try {
      const count = `SELECT (SELECT count(*) FROM devices) + (SELECT count(*) FROM audit_log) + (SELECT count(*) FROM sessions) + (SELECT count(*) FROM device_commands) AS n, pg_backend_pid() AS pid`;
      const c1 = await pool.connect();
      await c1.query(`BEGIN; SET LOCAL ROLE ${queryRole}`);
      await c1.query(`SELECT set_config('app.org_id', $1, true)`, [org]);
      const first = (await c1.query(count)).rows[0];
      await c1.query('COMMIT');
      c1.release();
      assert.equal(Number(first.n), 4, 'positive control: org A sees its four rows');

      const c2 = await pool.connect();
      await c2.query(`BEGIN; SET LOCAL ROLE ${queryRole}`);
      const second = (await c2.query(`${count}, current_setting('app.org_id', true) AS org, current_user AS who`)).rows[0];
      await c2.query('COMMIT');
      const after = (await c2.query('SELECT current_user AS who')).rows[0];
      c2.release();
      assert.equal(second.pid, first.pid, 'the same pooled connection');
      assert.equal(Number(second.n), 0, 'no org set: nothing visible');
      assert.ok(second.org === null || second.org === '', `app.org_id is unset after the first transaction (got ${second.org})`);
      assert.equal(second.who, queryRole);
      assert.notEqual(after.who, queryRole, 'the role switch ended with the transaction');
    } finally {
      await pool.end();
    }
  });

  it('audit - filters match literally and pages cover every row once, never another org', async () => {
    const a = testOrg('rma');
    const b = testOrg('rmb');
    const t0 = Date.now() - 60_000;
    const at = (i: number) => new Date(t0 + i * 1000);
    await fx.audit(a, { recorded_at: at(1), type: 'session.connected', actor: 'alice', outcome: 'ok', correlation_id: 'c-1' });
    await fx.audit(a, { recorded_at: at(2), type: 'publish.denied', actor: 'bob', topic: 'devices/x/t', outcome: 'denied' });
    await fx.audit(a, { recorded_at: at(3), type: 'sessionXconnected', actor: 'alice', outcome: 'ok' });
    await fx.audit(a, { recorded_at: at(4), type: 'session_connected', actor: 'al%', outcome: 'ok' });
    await fx.audit(b, { recorded_at: at(2), type: 'session.connected', actor: 'alice', outcome: 'ok', correlation_id: 'c-1' });

    const all = await rm.audit(a, {}, { limit: 100 });
    assert.equal(all.items.length, 4);
    assert.deepEqual(all.items.map((e) => e.recordedAt), [4, 3, 2, 1].map((i) => `${at(i).toISOString().slice(0, 23)}000Z`), 'newest first, ISO with microseconds');
    assert.equal((await rm.audit(b, {}, { limit: 100 })).items.length, 1, 'positive control: org B has its row');

    // `_` and `.` are literal in a type prefix: 'session_' matches only the row with an underscore.
    assert.deepEqual((await rm.audit(a, { type: 'session_' }, { limit: 100 })).items.map((e) => e.type), ['session_connected']);
    assert.deepEqual((await rm.audit(a, { type: 'session.' }, { limit: 100 })).items.map((e) => e.type), ['session.connected']);
    assert.deepEqual((await rm.audit(a, { type: '%' }, { limit: 100 })).items, []);
    assert.deepEqual((await rm.audit(a, { actor: 'al%' }, { limit: 100 })).items.map((e) => e.actor), ['al%']);
    assert.equal((await rm.audit(a, { actor: 'alice' }, { limit: 100 })).items.length, 2);
    assert.equal((await rm.audit(a, { outcome: 'denied', topic: 'devices/x/t' }, { limit: 100 })).items.length, 1);
    assert.equal((await rm.audit(a, { correlationId: 'c-1' }, { limit: 100 })).items.length, 1);
    const range = await rm.audit(a, { from: at(2).toISOString(), to: at(4).toISOString(), order: 'asc' }, { limit: 100 });
    assert.deepEqual(range.items.map((e) => e.type), ['publish.denied', 'sessionXconnected'], 'from inclusive, to exclusive, ascending');

    // Keyset pages of 1: every row exactly once, in order, and a last page with no next position.
    const seen: string[] = [];
    let after;
    for (let i = 0; i < 10; i++) {
      const p = await rm.audit(a, {}, { limit: 1, after });
      seen.push(...p.items.map((e) => e.id));
      if (!p.next) break;
      after = p.next;
    }
    assert.deepEqual(seen, all.items.map((e) => e.id));
  });

  it('devices, sessions, commands - filters and org scope', async () => {
    const a = testOrg('rma');
    const b = testOrg('rmb');
    const old = new Date(Date.now() - 3_600_000);
    const d1 = await fx.device(a, { online: true, transport: 'mqtt' });
    await fx.device(a, { online: false, transport: 'ws', last_seen: old });
    const dB = await fx.device(b);
    assert.deepEqual((await rm.devices(a, { online: true }, { limit: 10 })).items.map((d) => d.id), [d1.id]);
    assert.equal((await rm.devices(a, { transport: 'ws' }, { limit: 10 })).items.length, 1);
    assert.equal((await rm.devices(a, { seenSince: new Date(Date.now() - 60_000).toISOString() }, { limit: 10 })).items.length, 1);
    assert.equal((await rm.device(a, d1.id))?.id, d1.id, 'positive control');
    assert.equal(await rm.device(a, dB.id), undefined, "org B's device is not found under org A");
    assert.equal((await rm.device(b, dB.id))?.id, dB.id, 'positive control: org B finds it');

    await fx.session(a, { device_id: d1.id, actor: d1.id });
    await fx.session(a, { actor: 'admin', disconnected_at: new Date(), connected_at: null });
    await fx.session(b, { device_id: d1.id });
    assert.equal((await rm.sessions(a, { device: d1.id }, { limit: 10 })).items.length, 1);
    assert.equal((await rm.sessions(a, { state: 'closed' }, { limit: 10 })).items[0]?.actor, 'admin');
    assert.equal((await rm.sessions(a, { state: 'open' }, { limit: 10 })).items.length, 1);
    const pages = [await rm.sessions(a, {}, { limit: 1 })];
    pages.push(await rm.sessions(a, {}, { limit: 1, after: pages[0].next }));
    assert.equal(pages[1].items[0]?.connectedAt, null, 'a session without connected_at sorts last and is still reached');

    await fx.command(a, { device_id: d1.id, status: 'acked', type: 'device.config' });
    await fx.command(a, { device_id: 'other' });
    await fx.command(b, { device_id: d1.id, status: 'acked' });
    assert.equal((await rm.commands(a, { device: d1.id }, { limit: 10 })).items.length, 1);
    assert.equal((await rm.commands(a, { status: 'acked' }, { limit: 10 })).items[0]?.type, 'device.config');
    assert.equal((await rm.commands(a, { type: 'device.reboot' }, { limit: 10 })).items.length, 1);
  });

  it('errors - a database that is not there answers unavailable with no database text', async () => {
    const down = createPostgresReadModels({ databaseUrl: `postgres://postgres@127.0.0.1:${await freePort()}/x`, poolSize: 1 });
    try {
      await assert.rejects(down.devices('o', {}, { limit: 1 }), (err: unknown) => {
        assert.ok(err instanceof HubError);
        assert.equal(err.code, 'unavailable');
        assert.doesNotMatch(err.message, /ECONNREFUSED|127\.0\.0\.1|postgres/i);
        return true;
      });
    } finally {
      await down.close();
    }
  });
});
