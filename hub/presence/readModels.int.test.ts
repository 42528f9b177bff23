// test-run: serial (a reap deadline; scripts/test.mjs runs these one at a time after the rest)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient } from '../testing/wsClient.ts';
import { createTestDatabase, startProjector, waitUntil, type ProjectorProcess, type TestDatabase } from '../../projections/testing.ts';

/**
 * The sessions/devices read models agree with presence when a node dies without writing its
 * disconnects: the surviving node that reaps the dead node's presence entries records one
 * `session.disconnected` (reason `node_lost`) per session, and the projector closes them.
 * Two survivors heartbeat every 100 ms, so both race for every reap; each session must still end
 * exactly once. A dedicated database (a projector per database) and presence prefix.
 */
describe('presence - read models', () => {
  let db: TestDatabase;
  let issuer: TestIssuer;
  let projector: ProjectorProcess;
  let node1: HubProcess;
  let node2: HubProcess;
  let env: Record<string, string>;
  const clients: TestClient[] = [];
  const closers: (() => Promise<unknown>)[] = [];

  const q = async (sql: string, params: unknown[]) => (await db.pool.query(sql, params)).rows;
  const device = async (org: string, id: string) => (await q('SELECT online, open_sessions, last_seen FROM devices WHERE org_id = $1 AND id = $2', [org, id]))[0];
  const ws = async (hub: HubProcess, org: string, sub: string) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub, ['device']));
    clients.push(c);
    return c;
  };

  before(async () => {
    db = await createTestDatabase('presence');
    issuer = await createTestIssuer();
    env = { ...issuer.env, DATABASE_URL: db.url, ORGHUB_PRESENCE_PREFIX: `test:presence:${testOrg('rm')}:`, ORGHUB_PRESENCE_HEARTBEAT_MS: '100' };
    [node1, node2] = await Promise.all([startHubProcess({ ...env, ORGHUB_NODE_ID: 'survivor-1' }, { timeoutMs: 45_000 }), startHubProcess({ ...env, ORGHUB_NODE_ID: 'survivor-2' }, { timeoutMs: 45_000 })]);
    projector = startProjector(db.url);
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => {});
    for (const c of closers) await c().catch(() => {});
    await Promise.all([node1?.stop(), node2?.stop()]);
    await projector?.stop();
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const keys = await redis.keys(`${env.ORGHUB_PRESENCE_PREFIX}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
    await db?.drop();
  });

  it('should close the sessions of a node killed with -9 (reason node_lost, once each) so the devices go offline, while a survivor stays online', async () => {
    const org = testOrg();
    // The doomed node's heartbeat lapses after 2 s, so the reap comes quickly; the bound is presence's own test.
    const doomed = await startHubProcess({ ...env, ORGHUB_NODE_ID: `doomed-${org}`, ORGHUB_PRESENCE_HEARTBEAT_MS: '500', ORGHUB_PRESENCE_TTL_MS: '2000' }, { timeoutMs: 45_000 });
    closers.push(() => doomed.stop('SIGKILL'));
    const victims = ['v1', 'v2', 'v3'];
    for (const v of victims) await ws(doomed, org, v);
    await ws(node1, org, 'stayer');
    await waitUntil('the devices projected online', async () => {
      const rows = await q('SELECT id FROM devices WHERE org_id = $1 AND online', [org]);
      return rows.length === 4;
    }, 30_000);
    const before = await device(org, 'v1');

    await doomed.stop('SIGKILL');
    await waitUntil('the victims offline in the devices read model', async () => {
      const rows = await q('SELECT id FROM devices WHERE org_id = $1 AND NOT online ORDER BY id', [org]);
      return rows.length === victims.length && rows.map((r) => r.id).join() === victims.join();
    }, 40_000);

    // Marker: a device connects and leaves on each survivor; once both ends are projected, any
    // second node_lost record of a victim (a second reaper) would have been flushed before them.
    for (const [hub, id] of [[node1, 'marker-1'], [node2, 'marker-2']] as const) {
      const c = await ws(hub, org, id);
      await c.close();
    }
    await waitUntil('the markers projected offline', async () => (await q('SELECT id FROM devices WHERE org_id = $1 AND id LIKE $2 AND NOT online', [org, 'marker-%'])).length === 2, 30_000);

    const ends = await q(`SELECT actor, data->>'reason' AS reason, data->>'node' AS node, data->>'transport' AS transport, node AS recorded_by FROM audit_log
                          WHERE org_id = $1 AND type = 'session.disconnected' AND actor = ANY($2) ORDER BY actor`, [org, victims]);
    assert.deepEqual(ends.map((e) => [e.actor, e.reason, e.node, e.transport]), victims.map((v) => [v, 'node_lost', `doomed-${org}`, 'ws']));
    assert.ok(ends.every((e) => e.recorded_by === 'survivor-1' || e.recorded_by === 'survivor-2'), JSON.stringify(ends));
    const sessions = await q('SELECT device_id, node, reason, disconnected_at IS NOT NULL AS closed FROM sessions WHERE org_id = $1 AND device_id = ANY($2) ORDER BY device_id', [org, victims]);
    assert.deepEqual(sessions.map((s) => [s.device_id, s.node, s.reason, s.closed]), victims.map((v) => [v, `doomed-${org}`, 'node_lost', true]));
    const after = await device(org, 'v1');
    assert.equal(after.open_sessions, 0);
    assert.ok(after.last_seen > before.last_seen, 'last_seen moved to the recorded end');

    // Positive control: the survivor's device is online still, its session open
    assert.deepEqual(await device(org, 'stayer').then((d) => [d.online, d.open_sessions]), [true, 1]);
    // And a normal close keeps its own reason (not node_lost)
    assert.deepEqual((await q(`SELECT data->>'reason' AS reason FROM audit_log WHERE org_id = $1 AND type = 'session.disconnected' AND actor = 'marker-1'`, [org])).map((r) => r.reason), ['client closed']);
  });
});
