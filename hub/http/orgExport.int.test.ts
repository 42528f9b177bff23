import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { migrate } from '../eventstore/migrate.ts';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { waitUntil } from '../../projections/testing.ts';

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/orghub';

/** GET /v1/orgs/{org}/export against a real hub and Postgres: every event of the org, only the org's, resumable. */
describe('org export', () => {
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

    const lines = await exported(org);
    const ids = lines.map((l) => l.id);
    assert.deepEqual(ids.slice(0, log.length), log, 'every event of the log, in its order (audit of the export itself may follow)');
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
});
