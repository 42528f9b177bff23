import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { sleep, TestClient } from '../testing/wsClient.ts';
import { CloseCode } from '../errors.ts';

/**
 * Every audit event type from a real scenario against a real hub process, read back from the
 * events table (stream `audit` of the org; pre-auth refusals under `_unauthenticated`).
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const UNAUTHENTICATED = '_unauthenticated';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface AuditRow {
  org_id: string;
  stream_id: string;
  type: string;
  data: any;
  metadata: any;
  recorded_at: Date;
}

describe('audit', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let pool: pg.Pool;
  const clients: TestClient[] = [];

  const auditRows = async (org: string, type: string, since?: Date): Promise<AuditRow[]> => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      const r = await c.query<AuditRow>(
        `SELECT org_id, stream_id, type, data, metadata, recorded_at FROM events
          WHERE org_id = $1 AND stream_id = 'audit' AND type = $2 AND recorded_at >= $3 ORDER BY global_position`,
        [org, `audit.${type}`, since ?? new Date(0)],
      );
      return r.rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  };
  /** Polls until the org's audit stream holds an event of `type` matching `pred` (audit is batched, ~50 ms). */
  const audited = async (org: string, type: string, pred: (r: AuditRow) => boolean = () => true, since?: Date): Promise<AuditRow> => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = (await auditRows(org, type, since)).find(pred);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no audit.${type} in ${org}`);
      await sleep(100);
    }
  };
  const connect = async (org: string, sub: string, roles: string[] = ['admin']) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub, roles));
    clients.push(c);
    return c;
  };
  /** The session id the hub gave a connection, from its session.connected event. */
  const sessionOf = async (org: string, sub: string) => (await audited(org, 'session.connected', (r) => r.metadata.actor === sub)).metadata.session as string;

  before(async () => {
    issuer = await createTestIssuer();
    hub = await startHubProcess({ ...issuer.env, ORGHUB_MAX_SUBSCRIPTIONS: '2' }, { timeoutMs: 40_000 });
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await hub?.stop();
    await pool?.end();
  });

  it('audit - an accepted connection should record session.connected with actor, session, roles and transport', async () => {
    const org = testOrg();
    await connect(org, 'alice', ['admin', 'service']);
    const ev = await audited(org, 'session.connected');
    assert.equal(ev.org_id, org);
    assert.equal(ev.metadata.actor, 'alice');
    assert.match(ev.metadata.session, UUID);
    assert.ok(ev.metadata.node);
    assert.equal(ev.data.transport, 'ws');
    assert.equal(ev.data.encoding, 'json');
    assert.deepEqual(ev.data.roles, ['admin', 'service']);
  });

  it('audit - a refused connection should record session.rejected with the reason under _unauthenticated', async () => {
    const since = new Date(Date.now() - 1000);
    const expired = await issuer.sign({ sub: 'late', org: testOrg(), roles: ['admin'] }, { ttlSeconds: -60 });
    await assert.rejects(TestClient.connect(hub.wsUrl, expired), (e: any) => e.status === 401 && e.body === 'token_expired');
    await assert.rejects(TestClient.connect(hub.wsUrl, undefined), (e: any) => e.status === 401 && e.body === 'token_missing');
    const stranger = await (await createTestIssuer()).token(testOrg(), 'x');
    const http = await fetch(`${hub.url}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${stranger}`, 'content-type': 'application/json' }, body: '{"topic":"a","data":1}' });
    assert.equal(http.status, 401);

    for (const [reason, transport] of [['token_expired', 'ws'], ['token_missing', 'ws'], ['unknown_kid', 'http']]) {
      const ev = await audited(UNAUTHENTICATED, 'session.rejected', (r) => r.data.reason === reason && r.data.transport === transport, since);
      assert.equal(ev.metadata.actor, 'anonymous', 'nothing from an unverified token is trusted as the actor');
    }
  });

  it('audit - a closed connection should record session.disconnected with reason, code and durationMs', async () => {
    const org = testOrg();
    const c = await connect(org, 'alice');
    const session = await sessionOf(org, 'alice');
    await sleep(300);
    await c.close();
    const ev = await audited(org, 'session.disconnected');
    assert.equal(ev.metadata.session, session);
    assert.equal(ev.metadata.actor, 'alice');
    assert.equal(ev.data.reason, 'client closed');
    assert.equal(typeof ev.data.code, 'number');
    assert.ok(ev.data.durationMs >= 250 && ev.data.durationMs < 30_000, `durationMs ${ev.data.durationMs}`);
  });

  it('audit - a token refresh should record session.refreshed, and a refresh for another identity session.refresh_rejected', async () => {
    const org = testOrg();
    const c = await connect(org, 'alice');
    const fresh = await issuer.token(org, 'alice', ['admin'], { jti: 'jti-refresh-1' });
    assert.equal((await c.request({ op: 'auth', token: fresh })).op, 'ok');
    const ev = await audited(org, 'session.refreshed');
    assert.equal(ev.metadata.actor, 'alice');
    assert.equal(ev.data.jti, 'jti-refresh-1');
    assert.equal(typeof ev.data.exp, 'number');
    assert.equal(ev.metadata.session, await sessionOf(org, 'alice'));

    const other = await issuer.token(org, 'mallory');
    assert.equal((await c.request({ op: 'auth', token: other })).code, 'forbidden');
    assert.equal((await audited(org, 'session.refresh_rejected')).data.reason, 'identity_changed');
  });

  it('audit - denied subscribe, publish and command should each be recorded with the device as actor', async () => {
    const org = testOrg();
    const d1 = await connect(org, 'd1', ['device']);
    assert.equal((await d1.request({ op: 'sub', topic: 'devices/d2/#' })).code, 'forbidden');
    assert.equal((await d1.request({ op: 'pub', topic: 'devices/d2/telemetry', data: 1 })).code, 'forbidden');
    assert.equal((await d1.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: 'k' })).code, 'forbidden');
    const session = await sessionOf(org, 'd1');

    const sub = await audited(org, 'subscribe.denied');
    assert.deepEqual(sub.data, { pattern: 'devices/d2/#', transport: 'ws' });
    const pub = await audited(org, 'publish.denied');
    assert.deepEqual(pub.data, { topic: 'devices/d2/telemetry', transport: 'ws' });
    const cmd = await audited(org, 'command.denied');
    assert.deepEqual(cmd.data, { type: 'device.reboot', topic: 'devices/d1/commands', transport: 'ws' });
    for (const ev of [sub, pub, cmd]) assert.deepEqual([ev.org_id, ev.metadata.actor, ev.metadata.session], [org, 'd1', session]);

    // the HTTP API records its refusals too
    const h = await fetch(`${hub.url}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${await issuer.token(org, 'd1', ['device'])}`, 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'devices/d3/x', data: 1 }) });
    assert.equal(h.status, 403);
    assert.equal((await audited(org, 'publish.denied', (r) => r.data.transport === 'http')).data.topic, 'devices/d3/x');
  });

  it('audit - a third subscription over ORGHUB_MAX_SUBSCRIPTIONS=2 should record limit.hit', async () => {
    const org = testOrg();
    const c = await connect(org, 'alice');
    assert.equal((await c.request({ op: 'sub', topic: 'a/#' })).op, 'ok');
    assert.equal((await c.request({ op: 'sub', topic: 'b/#' })).op, 'ok');
    const third = await c.request({ op: 'sub', topic: 'c/#' });
    assert.deepEqual([third.op, third.code], ['err', 'limit']);
    const ev = await audited(org, 'limit.hit');
    assert.deepEqual(ev.data, { limit: 'subscriptions', max: 2, transport: 'ws' });
    assert.equal(ev.metadata.actor, 'alice');
  });

  it('audit - a binary frame on the JSON subprotocol should close with 4200 and record session.protocol_violation', async () => {
    const org = testOrg();
    const c = await connect(org, 'd9', ['device']);
    c.sendRaw(Buffer.from([0x82, 0xa2, 0x6f, 0x70]), true);
    assert.equal(await c.closed, CloseCode.protocolViolation);
    const ev = await audited(org, 'session.protocol_violation');
    assert.equal(ev.metadata.actor, 'd9');
    assert.equal(typeof ev.data.reason, 'string');
    assert.ok(ev.data.reason.length > 0);
    const gone = await audited(org, 'session.disconnected');
    assert.equal(gone.data.code, CloseCode.protocolViolation);
    assert.equal(gone.data.reason, ev.data.reason);
    assert.equal(gone.metadata.session, ev.metadata.session);
  });

  it('audit - an admin action (a command) should be recorded with the admin as actor and the admin session', async () => {
    // No separate admin endpoint exists yet: an admin's command is the admin action, recorded as the
    // command event itself (metadata.actor = the admin's token sub).
    const org = testOrg();
    const admin = await connect(org, 'root-admin');
    const ok = await admin.request({ op: 'cmd', type: 'device.config', topic: 'devices/d1/commands', data: { settings: { mode: 'eco' } }, key: 'admin-1' });
    assert.equal(ok.op, 'ok');
    const c = await pool.connect();
    let row: { type: string; metadata: any; data: any };
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      row = (await c.query(`SELECT type, metadata, data FROM events WHERE org_id = $1 AND event_id = $2`, [org, ok.eventId])).rows[0];
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
    assert.equal(row.type, 'device.config');
    assert.deepEqual(row.data, { settings: { mode: 'eco' } });
    assert.equal(row.metadata.actor, 'root-admin');
    assert.equal(row.metadata.session, await sessionOf(org, 'root-admin'));
  });
});
