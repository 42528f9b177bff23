import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestIssuer, type TestIssuer } from '../../hub/testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../../hub/testing/hubProcess.ts';
import { openApiValidator } from '../../hub/testing/openapi.ts';
import { createTestDatabase, startProjector, waitUntil, type ProjectorProcess, type TestDatabase } from '../testing.ts';

/**
 * The `orgs` read model follows the org lifecycle: a real hub records created / updated / suspended
 * / resumed through the platform API into each org's `org` stream, a real projector folds them, and
 * the row (read as the owner: the query API does not serve orgs) matches the org directory.
 */
describe('projections - orgs lifecycle', () => {
  let db: TestDatabase;
  let hub: HubProcess;
  let projector: ProjectorProcess;
  let issuer: TestIssuer;
  let platform: string;
  const check = openApiValidator();

  before(async () => {
    db = await createTestDatabase('orgslife');
    issuer = await createTestIssuer();
    hub = await startHubProcess({ ...issuer.env, DATABASE_URL: db.url }, { timeoutMs: 90_000 });
    projector = startProjector(db.url);
    platform = await issuer.token(testOrg('ops'), 'operator', ['platform']);
  });
  after(async () => {
    await projector?.stop();
    await hub?.stop();
    await db?.drop();
  });

  const call = async (method: string, path: string, template: string, token: string, body?: unknown) => {
    const r = await fetch(`${hub.url}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = (await r.json()) as any;
    const problem = check(method.toLowerCase(), template, r.status, json);
    assert.equal(problem, undefined, `${method} ${path} ${r.status}: ${problem}`);
    return { status: r.status, body: json };
  };
  const row = async (org: string) =>
    (await db.pool.query(
      `SELECT status, tier, settings, limits, audit_retention_days, created_at, suspended_at, suspend_reason, lifecycle_position::text AS pos FROM orgs WHERE org_id = $1 AND id = $1`,
      [org],
    )).rows[0] as Record<string, any> | undefined;
  /** Waits until the projector has applied the lifecycle event `eventId` to the org's row. */
  const applied = async (org: string, eventId: string) => {
    const { rows } = await db.pool.query('SELECT global_position::text AS pos FROM events WHERE event_id = $1', [eventId]);
    assert.equal(rows.length, 1, `event ${eventId} is in the log`);
    return waitUntil(`orgs row of ${org} at ${rows[0].pos}`, async () => {
      const r = await row(org);
      return r && r.pos !== null && BigInt(r.pos) >= BigInt(rows[0].pos) ? r : undefined;
    }, 60_000).catch(async (err: Error) => {
      const dead = await db.pool.query('SELECT projection, error FROM projection_dead_letters');
      throw new Error(`${err.message}; row ${JSON.stringify(await row(org))}; dead letters ${JSON.stringify(dead.rows)}; projector:\n${projector.output().slice(-2000)}`);
    });
  };

  it('projections - orgs: created, updated, suspended and resumed land in the row; another org and a non-platform caller change nothing', async () => {
    const org = testOrg();
    const other = testOrg();
    const c = await call('POST', '/v1/orgs', '/v1/orgs', platform, { org, tier: 'gold', settings: { region: 'eu' }, limits: { ORGHUB_LIMITS_PUBLISH_USER: 10 }, auditRetentionDays: 30 });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    const o = await call('POST', '/v1/orgs', '/v1/orgs', platform, { org: other, tier: 'silver' });
    assert.equal(o.status, 201);
    let r = await applied(org, c.body.eventId);
    assert.equal(r.status, 'active');
    assert.equal(r.tier, 'gold');
    assert.deepEqual(r.settings, { region: 'eu' });
    assert.deepEqual(r.limits, { ORGHUB_LIMITS_PUBLISH_USER: 10 });
    assert.equal(r.audit_retention_days, 30);
    assert.equal(r.created_at.toISOString(), c.body.org.createdAt);
    assert.equal(r.suspended_at, null);

    const u = await call('PATCH', `/v1/orgs/${org}`, '/v1/orgs/{org}', platform, { tier: 'basic', limits: { ORGHUB_LIMITS_PUBLISH_USER: 3 } });
    assert.equal(u.status, 200);
    r = await applied(org, u.body.eventId);
    assert.equal(r.tier, 'basic');
    assert.deepEqual(r.limits, { ORGHUB_LIMITS_PUBLISH_USER: 3 });
    assert.deepEqual(r.settings, { region: 'eu' }, 'a field not in the update stays');
    assert.equal(r.audit_retention_days, 30);

    // An org admin (of the org itself) is not a platform operator: 403, and nothing is recorded.
    const admin = await issuer.token(org, 'alice', ['admin']);
    const denied = await call('POST', `/v1/orgs/${other}/suspend`, '/v1/orgs/{org}/suspend', admin, { reason: 'hostile' });
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error.code, 'forbidden');

    const s = await call('POST', `/v1/orgs/${org}/suspend`, '/v1/orgs/{org}/suspend', platform, { reason: 'unpaid' });
    assert.equal(s.status, 200);
    r = await applied(org, s.body.eventId);
    assert.equal(r.status, 'suspended');
    assert.equal(r.suspend_reason, 'unpaid');
    assert.ok(r.suspended_at instanceof Date);
    // the directory says the same
    const dir = await call('GET', `/v1/orgs/${org}`, '/v1/orgs/{org}', platform);
    assert.equal(dir.body.org.status, 'suspended');
    assert.equal(dir.body.org.tier, 'basic');

    const res = await call('POST', `/v1/orgs/${org}/resume`, '/v1/orgs/{org}/resume', platform);
    assert.equal(res.status, 200);
    r = await applied(org, res.body.eventId);
    assert.equal(r.status, 'active');
    assert.equal(r.suspended_at, null);
    assert.equal(r.suspend_reason, null);
    assert.equal(r.tier, 'basic');

    // The other org: created (positive control), never suspended by the refused call.
    const ro = await applied(other, o.body.eventId);
    assert.equal(ro.tier, 'silver');
    assert.equal(ro.status, 'active');
    assert.equal(ro.suspended_at, null);
    const otherEvents = await db.pool.query(`SELECT type FROM events WHERE org_id = $1 AND stream_id = 'org' ORDER BY global_position`, [other]);
    assert.deepEqual(otherEvents.rows.map((e) => e.type), ['org.created']);

    const list = await call('GET', '/v1/orgs', '/v1/orgs', platform);
    assert.deepEqual(list.body.orgs.filter((x: any) => x.org === org || x.org === other).map((x: any) => [x.org, x.status]).sort(), [[org, 'active'], [other, 'active']].sort());
  });
});
