import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { migrate } from '../eventstore/migrate.ts';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { waitUntil } from '../testing/until.ts';

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/orghub';

/**
 * GET /v1/orgs/{org}/export and POST /v1/orgs/{org}/offboard against a real hub and Postgres: the
 * export holds every event of the org (only the org's, resumable); afterwards neither the log nor
 * the read models hold anything of it, while another org is untouched.
 */
describe('org export and offboarding', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let pool: pg.Pool;
  let platform: string;

  before(async () => {
    await migrate({ quiet: true });
    issuer = await createTestIssuer();
    hub = await startHubProcess({ ...issuer.env, ORGHUB_AUDIT_AGGREGATE_MS: '50' }, { timeoutMs: 90_000 });
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    platform = await issuer.token(testOrg('ops'), 'operator', ['platform']);
  });
  after(async () => {
    await hub?.stop();
    await pool?.end();
  });

  const call = (method: string, path: string, token: string, body?: unknown) =>
    fetch(`${hub.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const exported = async (org: string, query = '') => {
    const r = await call('GET', `/v1/orgs/${org}/export${query}`, platform);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/x-ndjson');
    return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; position: string; stream: string; type: string; data: unknown });
  };
  const idsInLog = async (org: string) => (await pool.query<{ id: string }>('SELECT event_id::text AS id FROM events WHERE org_id = $1 ORDER BY global_position', [org])).rows.map((r) => r.id);

  it('org export - holds every event of the org in log order, none of another org\'s; resumes after a position; platform only', async () => {
    const org = testOrg('exp');
    const other = testOrg('exp-other');
    for (const o of [org, other]) assert.equal((await call('POST', '/v1/orgs', platform, { org: o })).status, 201);
    assert.equal((await call('PATCH', `/v1/orgs/${org}`, platform, { tier: 'free' })).status, 200);
    assert.equal((await call('POST', `/v1/orgs/${org}/suspend`, platform, { reason: 'export test' })).status, 200);
    assert.equal((await call('POST', `/v1/orgs/${org}/resume`, platform)).status, 200);
    // the lifecycle events and their audit events are in the log
    const log = await waitUntil('org events in the log', async () => {
      const ids = await idsInLog(org);
      return ids.length >= 8 ? ids : undefined;
    }, 20_000);

    // The store serves events up to its visibility horizon (no transaction before them still open),
    // so an event committed a moment ago may appear in the next export: poll until the log is covered.
    const lines = await waitUntil('an export covering the log', async () => {
      const l = await exported(org);
      return l.length >= log.length ? l : undefined;
    }, 10_000);
    const ids = lines.map((l) => l.id);
    assert.deepEqual(ids.slice(0, log.length), log, 'every event of the log, in its order (later events may follow)');
    assert.deepEqual(lines.filter((l) => l.stream === 'org').map((l) => l.type), ['org.created', 'org.updated', 'org.suspended', 'org.resumed']);
    const otherLog = await idsInLog(other);
    assert.ok(otherLog.length >= 1, 'positive control: the other org has events');
    assert.deepEqual(ids.filter((id) => otherLog.includes(id)), [], 'none of the other org\'s events');
    const otherLines = await exported(other);
    assert.deepEqual(otherLines.map((l) => l.id).slice(0, otherLog.length), otherLog);

    // resumable: after line k, exactly the lines after it
    const k = 2;
    const rest = await exported(org, `?after=${lines[k]!.position}`);
    assert.deepEqual(rest.map((l) => l.id).slice(0, lines.length - k - 1), ids.slice(k + 1));

    for (const [q, code] of [['?after=nope', 'invalid'], ['?from=1:2', 'invalid']] as const) {
      const r = await call('GET', `/v1/orgs/${org}/export${q}`, platform);
      assert.equal(r.status, 400);
      assert.equal(((await r.json()) as any).error.code, code);
    }
    // an org admin, even of the org itself, is not the platform
    const denied = await call('GET', `/v1/orgs/${org}/export`, await issuer.token(org, 'alice', ['admin']));
    assert.equal(denied.status, 403);
    assert.equal(((await denied.json()) as any).error.code, 'forbidden');
  });

  const READ_MODELS = ['orgs', 'devices', 'sessions', 'audit_log', 'device_commands'];
  const counts = async (org: string) => {
    const out: Record<string, number> = {};
    for (const t of ['events', 'streams', ...READ_MODELS]) out[t] = (await pool.query(`SELECT count(*)::int AS n FROM ${t} WHERE org_id = $1`, [org])).rows[0].n;
    return out;
  };
  /** Read-model rows as the projector would write them (this suite runs no projector). */
  const seedReadModels = async (org: string) => {
    await pool.query(`INSERT INTO orgs (org_id, id, first_event_at, last_event_at) VALUES ($1, $1, now(), now()) ON CONFLICT DO NOTHING`, [org]);
    await pool.query(`INSERT INTO devices (org_id, id, first_seen, last_seen) VALUES ($1, 'd1', now(), now())`, [org]);
  };

  it('org offboarding - suspended first, confirmed, platform only; erases the log and read models of the org, keeps a tombstone; another org untouched', async () => {
    const org = testOrg('off');
    const other = testOrg('off-other');
    for (const o of [org, other]) assert.equal((await call('POST', '/v1/orgs', platform, { org: o, settings: { secret: 'personal data' } })).status, 201);
    await seedReadModels(org);
    await seedReadModels(other);
    await waitUntil('both orgs have events', async () => (await idsInLog(org)).length >= 2 && (await idsInLog(other)).length >= 2, 20_000);

    const notSuspended = await call('POST', `/v1/orgs/${org}/offboard`, platform, { confirm: org });
    assert.equal(notSuspended.status, 409);
    assert.equal(((await notSuspended.json()) as any).error.code, 'conflict');
    const admin = await call('POST', `/v1/orgs/${org}/offboard`, await issuer.token(org, 'alice', ['admin']), { confirm: org });
    assert.equal(admin.status, 403, 'an org admin is not the platform');
    assert.equal((await call('POST', `/v1/orgs/${org}/suspend`, platform, { reason: 'leaving' })).status, 200);
    const unconfirmed = await call('POST', `/v1/orgs/${org}/offboard`, platform, { confirm: other });
    assert.equal(unconfirmed.status, 400);
    assert.equal(((await unconfirmed.json()) as any).error.code, 'invalid');
    const before = await counts(org);
    assert.ok(before.events >= 2 && before.streams >= 1 && before.orgs === 1 && before.devices === 1, `positive control: the org has data ${JSON.stringify(before)}`);
    const exportedIds = (await exported(org)).map((l) => l.id);
    const otherBefore = await counts(other);

    const r = await call('POST', `/v1/orgs/${org}/offboard`, platform, { confirm: org });
    const body = (await r.json()) as any;
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.ok(body.eventsDeleted >= exportedIds.length, `deleted ${body.eventsDeleted}, exported ${exportedIds.length}`);
    assert.equal(body.org.status, 'suspended');
    assert.equal(body.org.suspendReason, 'offboarded');
    assert.deepEqual(body.org.settings, {});

    const zero = Object.fromEntries(Object.keys(before).map((k) => [k, 0]));
    const left = (await pool.query('SELECT stream_id, type, data::text, recorded_at FROM events WHERE org_id = $1', [org])).rows;
    assert.deepEqual(await counts(org), zero, `nothing of the org in the log or the read models; left ${JSON.stringify(left)}`);
    const leftover = await pool.query(`SELECT count(*)::int AS n FROM events WHERE data::text LIKE '%personal data%' AND org_id = $1`, [org]);
    assert.equal(leftover.rows[0].n, 0);
    assert.deepEqual(await exported(org), [], 'the export is empty now');
    const tomb = await pool.query('SELECT actor, events_deleted::int AS n FROM org_tombstones WHERE org_id = $1', [org]);
    assert.deepEqual(tomb.rows, [{ actor: 'operator', n: body.eventsDeleted }]);
    const resume = await call('POST', `/v1/orgs/${org}/resume`, platform);
    assert.equal(resume.status, 409);
    assert.equal((await call('POST', '/v1/orgs', platform, { org })).status, 409, 'the id stays taken');

    // The other org: untouched (events may only have grown by its own audit).
    const otherAfter = await counts(other);
    assert.ok(otherBefore.events >= 2 && otherAfter.events >= otherBefore.events, `events: ${otherBefore.events} → ${otherAfter.events}`);
    assert.equal(otherAfter.streams, otherBefore.streams);
    assert.equal(otherAfter.devices, 1);
    assert.equal(otherAfter.orgs, 1);
    assert.ok((await exported(other)).length >= 2);
    // Still nothing of the offboarded org once this node's audit has settled.
    await waitUntil('audit settled', async () => (await fetch(`${hub.url}/ready`)).status === 200);
    assert.deepEqual(await counts(org), zero);
  });
});
