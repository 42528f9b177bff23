import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';

/**
 * A fleet command's expiry survives the death of the node that issued it: the command is in the
 * cluster-wide expiry schedule (Redis), and another node's sweep records `expired`. Two real hub
 * processes on the same event store; the issuing one is killed with -9 before the expiry. The
 * schedule's prefix is this file's own, so hubs of other suites (other databases) never take it.
 */
describe('fleet - expiry across node loss', () => {
  let issuer: TestIssuer;
  let survivor: HubProcess;
  let pool: pg.Pool;
  let env: Record<string, string>;
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    issuer = await createTestIssuer();
    env = { ...issuer.env, ORGHUB_FLEET_REDIS_PREFIX: `test:fleet-expiry:${testOrg('x')}:` };
    survivor = await startHubProcess({ ...env, ORGHUB_NODE_ID: 'expiry-survivor' }, { timeoutMs: 45_000 });
    pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub', max: 2 });
  });
  after(async () => {
    for (const c of closers) await c().catch(() => {});
    await survivor?.stop();
    await pool?.end();
  });

  const expiredEvents = async (org: string, commandId: string) => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      return (await c.query(`SELECT metadata->>'node' AS node FROM events WHERE org_id = $1 AND type = 'fleet.command.expired' AND data->>'commandId' = $2`, [org, commandId])).rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  };
  const issue = async (hub: HubProcess, org: string, device: string, expiresIn: number) => {
    const r = await fetch(`${hub.url}/v1/devices/${device}/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await issuer.token(org, 'admin-1')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'reboot', data: { reason: 'expiry' }, expiresIn }),
    });
    assert.equal(r.status, 202);
    return ((await r.json()) as { commandId: string }).commandId;
  };

  it('should record expired from another node when the issuing node was killed with -9, once, and leave an unexpired command alone', async () => {
    const org = testOrg();
    const doomed = await startHubProcess({ ...env, ORGHUB_NODE_ID: `expiry-doomed-${org}` }, { timeoutMs: 45_000 });
    closers.push(() => doomed.stop('SIGKILL'));
    const short = await issue(doomed, org, 'x1', 2);
    const long = await issue(doomed, org, 'x2', 600);
    await doomed.stop('SIGKILL');

    // Due at +2 s, left 2 s to its (dead) issuer's timer, then the survivor's 1 s sweep
    const deadline = Date.now() + 20_000;
    let rows = await expiredEvents(org, short);
    while (rows.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      rows = await expiredEvents(org, short);
    }
    assert.deepEqual(rows, [{ node: 'expiry-survivor' }]);
    // Control: the command that is not due stays open
    assert.deepEqual(await expiredEvents(org, long), []);
  });
});
