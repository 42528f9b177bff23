import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startMqttHub, type MqttHub } from '../hub/mqtt/mqttTestKit.ts';
import { createTestIssuer, type TestIssuer } from '../hub/testing/issuer.ts';
import { TestClient } from '../hub/testing/wsClient.ts';
import { testOrg } from '../hub/testing/hubProcess.ts';
import { DEFAULT_QUERY_ROLE } from '../hub/eventstore/roles.ts';
import { createPostgresEventStore } from '../hub/eventstore/postgresEventStore.ts';
import { createTestDatabase, runRebuild, startProjector, tableHash, waitUntil, type ProjectorProcess, type TestDatabase } from './testing.ts';
import { driveWorkload } from './workload.ts';

const TABLES = ['orgs', 'audit_log', 'sessions', 'devices', 'device_commands'];

/**
 * Replay determinism: a mixed workload through a real hub (WebSocket, HTTP, MQTT, denials,
 * commands) is projected live; then `projections:rebuild -- all` rebuilds every table from
 * position zero and swaps it in while the live projector keeps running, and every table must hash
 * the same as before. A dedicated database, so whole tables are compared and swapped.
 */
describe('projections - replay', () => {
  let db: TestDatabase;
  let m: MqttHub;
  let projector: ProjectorProcess;
  let issuer: TestIssuer;
  const orgs = [testOrg('rpA'), testOrg('rpB')];
  before(async () => {
    db = await createTestDatabase('replay');
    issuer = await createTestIssuer();
    // A short aggregation window, so repeated denials are recorded (as one event with `count`) before the log settles.
    m = await startMqttHub(issuer, { DATABASE_URL: db.url, ORGHUB_PROJECTION_STATUS_CACHE_MS: '0', ORGHUB_AUDIT_AGGREGATE_MS: '100' });
    projector = startProjector(db.url);
    for (const org of orgs) await driveWorkload({ issuer, org, wsUrl: m.hub.wsUrl, httpUrl: m.hub.url, mqttUrl: m.tcpUrl });
    // A command recorded before command topics were declared (`x-orghub-topics`), on a topic that
    // names no device: the hub refuses such a `cmd` now, but logs keep them and must replay the same.
    const store = createPostgresEventStore({ databaseUrl: db.url });
    try {
      for (const org of orgs) await store.appendToStream(org, 'commands:fleet/all', [{ type: 'device.config', data: { settings: { legacy: true } }, metadata: { actor: 'alice' } }]);
    } finally {
      await store.close();
    }
  });
  after(async () => {
    await projector?.stop();
    await m?.hub.stop();
    await db?.drop();
  });

  const head = async () => (await db.pool.query(`SELECT count(*)::int AS n FROM events`)).rows[0].n as number;
  const caughtUp = async () => {
    const n = await head();
    const { rows } = await db.pool.query('SELECT name, events_applied::int AS n FROM projection_checkpoints');
    return rows.length === 4 && rows.every((r) => r.n === n) && n;
  };

  it('should project the workload, report no lag on /ready and /metrics, then rebuild all into identical tables', async () => {
    // Audit events are flushed every 50 ms and disconnects come last: wait for a stable head.
    let n = 0;
    await waitUntil('projector caught up with a settled log', async () => {
      const now = await caughtUp();
      const settled = now && now === n;
      n = now || 0;
      return settled;
    }, 20000, 300);

    const [a] = orgs;
    const q = (sql: string, p: unknown[] = []) => db.pool.query(sql, p).then((r) => r.rows);
    assert.equal((await q(`SELECT count(*)::int AS n FROM device_commands WHERE org_id = $1`, [a]))[0].n, 8, '3 reboots (retries not doubled) + 3 configs + 1 over HTTP + 1 legacy command on fleet/all');
    assert.deepEqual(await q(`SELECT DISTINCT device_id FROM device_commands WHERE org_id = $1 ORDER BY 1 NULLS LAST`, [a]), [{ device_id: 'd-cfg' }, { device_id: 'd-http' }, { device_id: 'd-ws' }, { device_id: null }]);
    const outcomes = await q(`SELECT type, outcome, sum(coalesce((data->>'count')::int, 1))::int AS n FROM audit_log WHERE org_id = $1 GROUP BY 1, 2 ORDER BY 1`, [a]);
    const by = Object.fromEntries(outcomes.map((o) => [o.type, o]));
    assert.equal(by['publish.denied'].outcome, 'denied');
    assert.ok(by['publish.denied'].n >= 5, JSON.stringify(outcomes)); // 3 WS + 1 HTTP + 1 MQTT
    assert.equal(by['subscribe.denied'].n, 3);
    assert.equal(by['command.denied'].n, 3);
    assert.equal(by['session.connected'].outcome, 'allowed');
    assert.deepEqual(await q(`SELECT DISTINCT topic FROM audit_log WHERE org_id = $1 AND type = 'subscribe.denied'`, [a]), [{ topic: 'devices/other/#' }]);
    const devices = await q(`SELECT id, online, open_sessions, transport, client_id FROM devices WHERE org_id = $1 ORDER BY id`, [a]);
    assert.deepEqual(devices, [
      { id: 'd-mqtt', online: false, open_sessions: 0, transport: 'mqtt', client_id: `c-${a}` },
      { id: 'd-ws', online: false, open_sessions: 0, transport: 'ws', client_id: null },
    ]);
    const sessions = await q(`SELECT actor, device_id, transport, disconnected_at IS NOT NULL AS closed, duration_ms IS NOT NULL AS has_duration FROM sessions WHERE org_id = $1 ORDER BY actor`, [a]);
    assert.deepEqual(sessions.map((s) => `${s.actor}:${s.device_id}:${s.transport}:${s.closed}:${s.has_duration}`), ['alice:null:ws:true:true', 'd-mqtt:d-mqtt:mqtt:true:true', 'd-ws:d-ws:ws:true:true']);
    assert.equal((await q(`SELECT count(*)::int AS n FROM orgs WHERE org_id = ANY($1)`, [orgs]))[0].n, 2);
    assert.ok((await q(`SELECT count(*)::int AS n FROM audit_log WHERE org_id = '_unauthenticated' AND type = 'session.rejected'`))[0].n >= 2);

    // The hub reports the lag it reads from Postgres.
    const ready = await (await fetch(`${m.hub.url}/ready`)).json();
    assert.equal(ready.checks.projections.status, 'up');
    assert.equal(ready.checks.projections.lagging, false);
    assert.equal(ready.checks.projections.projections.audit_log.behindEvents, 0);
    const metrics = await (await fetch(`${m.hub.url}/metrics`)).text();
    assert.match(metrics, /orghub_projection_lag_events\{projection="audit_log"\} 0/);
    assert.match(metrics, /orghub_projection_dead_letters\{projection="sessions"\} 0/);

    const before = Object.fromEntries(await Promise.all(TABLES.map(async (t) => [t, await tableHash(db.pool, t, [...orgs, '_unauthenticated'])])));
    for (const t of TABLES) assert.ok(before[t].rows > 0, `${t} has rows`);

    const r = await runRebuild(db.url, 'all');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /audit_log v1: \d+ events .* swapped into place/);
    assert.match(r.stderr, /rebuild sessions \[#+\] 100% .* ev\/s ETA/);
    const afterHashes = Object.fromEntries(await Promise.all(TABLES.map(async (t) => [t, await tableHash(db.pool, t, [...orgs, '_unauthenticated'])])));
    assert.deepEqual(afterHashes, before);

    // The swapped tables carry RLS, policies and grants; no shadow is left behind.
    const rel = await q(`SELECT relname, relrowsecurity AND relforcerowsecurity AS forced FROM pg_class WHERE relname = ANY($1) OR relname ~ '^audit_log_[0-9]{4}_[0-9]{2}$' OR relname LIKE '%\\_\\_rebuild%'`, [TABLES]);
    assert.ok(rel.length > TABLES.length, JSON.stringify(rel));
    for (const x of rel) assert.ok(x.forced && !x.relname.includes('__rebuild'), JSON.stringify(x));
    const grants = await q(`SELECT table_name FROM information_schema.role_table_grants WHERE grantee = $1 AND privilege_type = 'SELECT' ORDER BY 1`, [DEFAULT_QUERY_ROLE]);
    assert.deepEqual(grants.map((g) => g.table_name), [...TABLES].sort());
    const policies = await q(`SELECT tablename, policyname FROM pg_policies WHERE tablename = ANY($1) ORDER BY 1, 2`, [TABLES]);
    assert.equal(policies.length, TABLES.length * 2, JSON.stringify(policies));

    // The live projector resumes from the swapped checkpoint, into the new tables.
    const count = async () => (await db.pool.query(`SELECT count(*)::int AS n FROM audit_log WHERE org_id = $1 AND topic = 'devices/after-swap/x'`, [a])).rows[0].n as number;
    assert.equal(await count(), 0);
    const dev = await TestClient.connect(m.hub.wsUrl, await issuer.token(a, 'd-late', ['device']));
    assert.equal((await dev.request({ op: 'pub', topic: 'devices/after-swap/x', data: 1 })).code, 'forbidden');
    await dev.close();
    await waitUntil('a denial after the swap projected into the new audit_log', async () => (await count()) === 1, 10000);
  });
});
