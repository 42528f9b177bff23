import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import mqtt from 'mqtt';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient } from '../testing/wsClient.ts';

/**
 * Correlation ids (docs/operations.md "Logs"), against a real hub process logging at debug level:
 * X-Request-Id is echoed (a valid caller id kept, an invalid one replaced), every request's log
 * lines carry it, the events the request or connection (WebSocket or MQTT) causes record it as
 * `correlationId`, and no JWT, API key, API key secret or configured secret appears anywhere in the
 * process output.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const CLUSTER_SECRET = `cluster-secret-${'s'.repeat(24)}-${Date.now()}`;

async function waitUntil<T>(what: string, get: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('correlation ids', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let pool: pg.Pool;
  let mqttPort: number;

  before(async () => {
    issuer = await createTestIssuer();
    mqttPort = await freePort();
    hub = await startHubProcess({ ...issuer.env, ORGHUB_LOG_LEVEL: 'debug', ORGHUB_CLUSTER_SECRET: CLUSTER_SECRET, ORGHUB_MQTT_PORT: String(mqttPort) }, { timeoutMs: 45_000 });
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await hub?.stop();
    await pool?.end();
  });

  /** Events of the org, read as the projector role (RLS: the test sees every org's rows only this way). */
  const events = async (org: string): Promise<{ type: string; metadata: Record<string, string> }[]> => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      return (await c.query('SELECT type, metadata FROM events WHERE org_id = $1 ORDER BY global_position', [org])).rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  };

  it('correlation - X-Request-Id is echoed and recorded on the events it causes; no token, key or secret is ever logged', async () => {
    const org = testOrg('corr');
    const jwt = await issuer.token(org, 'root', ['admin']);
    const post = (path: string, auth: string, body: unknown, requestId?: string) =>
      fetch(`${hub.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json', ...(requestId ? { 'x-request-id': requestId } : {}) }, body: JSON.stringify(body) });

    // A caller's id is kept and echoed; the API key it creates is recorded under it.
    const createId = `req-create-${Date.now()}`;
    const created = await post('/v1/apikeys', jwt, { name: 'ingest', roles: ['admin'] }, createId);
    assert.equal(created.status, 201);
    assert.equal(created.headers.get('x-request-id'), createId);
    const key: string = ((await created.json()) as { key: string }).key;
    assert.match(key, /^ohk_/);
    // ohk_<16 hex id>_<43 base64url>: the secret may itself hold `_`, so it is cut by position (a
    // split on `_` gave a short or empty fragment about once in 30 keys, found in any output).
    const secretPart = key.slice('ohk_'.length + 16 + 1);
    assert.equal(secretPart.length, 43);

    // A command over HTTP with the API key: the command event carries the request id.
    const cmdId = `req-cmd-${Date.now()}`;
    const cmd = await post('/v1/commands', key, { type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'corr' }, key: 'k1' }, cmdId);
    assert.equal(cmd.status, 200, await cmd.clone().text());
    assert.equal(cmd.headers.get('x-request-id'), cmdId);

    // Invalid caller ids are replaced by a fresh UUID (too short, spaces/CRLF, too long), never echoed.
    for (const bad of ['short', 'has space in it', `x${'a'.repeat(128)}`]) {
      const r = await post('/v1/publish', key, { topic: 'a/b', data: 1 }, bad);
      assert.equal(r.status, 200);
      const echoed = r.headers.get('x-request-id');
      assert.notEqual(echoed, bad);
      assert.match(echoed ?? '', /^[0-9a-f-]{36}$/);
    }
    // Errors carry one too; a wrong API key secret and a wrong JWT are refused (and must not be logged).
    const wrongKey = `${key.slice(0, -4)}AAAA`;
    const refused = await post('/v1/publish', wrongKey, { topic: 'a/b', data: 1 }, 'req-refused-0001');
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('x-request-id'), 'req-refused-0001');
    const badJwt = `${jwt.slice(0, -6)}AAAAAA`;
    assert.equal((await post('/v1/publish', badJwt, { topic: 'a/b', data: 1 })).status, 401);

    // A WebSocket connection: its commands carry the connection's correlation id, logged on connect.
    const ws = await TestClient.connect(hub.wsUrl, jwt);
    const ack = await ws.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d2/commands', data: { reason: 'ws' }, key: 'k2' });
    assert.equal(ack.op, 'ok', JSON.stringify(ack));
    const wsKey = await TestClient.connect(hub.wsUrl, key, { via: 'query' });
    wsKey.send({ op: 'ping', id: 'p1' });
    await wsKey.waitFor((f) => f.op === 'pong' && f.id === 'p1');
    await Promise.all([ws.close(), wsKey.close()]);

    // MQTT 5 with the JWT and 3.1.1 with the API key, each as the password: a keyed command each.
    for (const [version, password, idemKey] of [[5, jwt, 'k3'], [4, key, 'k4']] as const) {
      const m = await mqtt.connectAsync({ host: '127.0.0.1', port: mqttPort, protocolVersion: version, username: 'corr', password, reconnectPeriod: 0 });
      await m.publishAsync('$cmd/devices/d3/commands', JSON.stringify({ type: 'device.reboot', data: { reason: `mqtt${version}` }, key: idemKey }), { qos: 1 });
      await m.endAsync();
    }

    const evs = await waitUntil('command and audit events', async () => {
      const e = await events(org);
      return e.some((x) => x.type === 'audit.admin.action') && e.some((x) => x.type === 'access.apikey_created') && e.filter((x) => x.type === 'device.reboot').length === 4 && e.filter((x) => x.type === 'audit.session.disconnected').length >= 4 ? e : undefined;
    });
    const [httpCmd, wsCmd, mqtt5Cmd, mqtt4Cmd] = evs.filter((e) => e.type === 'device.reboot');
    assert.equal(httpCmd!.metadata.correlationId, cmdId);
    assert.equal(evs.find((e) => e.type === 'access.apikey_created')!.metadata.correlationId, createId);
    assert.equal(evs.find((e) => e.type === 'audit.admin.action')!.metadata.correlationId, createId);
    const wsCorr = wsCmd!.metadata.correlationId;
    assert.match(wsCorr ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(wsCorr, wsCmd!.metadata.session);
    // Each MQTT connection's commands and audit events carry its session id as the correlation id.
    const mqttCorr = [mqtt5Cmd!, mqtt4Cmd!].map((e) => e.metadata.correlationId!);
    for (const [i, e] of [mqtt5Cmd!, mqtt4Cmd!].entries()) {
      assert.match(mqttCorr[i]!, /^[0-9a-f-]{36}$/);
      assert.equal(mqttCorr[i], e.metadata.session);
      assert.notEqual(mqttCorr[i], wsCorr);
      assert.ok(evs.some((x) => x.type === 'audit.session.connected' && x.metadata.correlationId === mqttCorr[i]), 'its session.connected audit carries it');
    }
    assert.notEqual(mqttCorr[0], mqttCorr[1], 'one id per connection');

    // The logs: every id above is on a line (positive control that debug lines were captured)...
    const out = await waitUntil('ws and mqtt closes logged', async () => (hub.output().includes('"ws closed"') && hub.output().split('"mqtt closed"').length > 2 ? hub.output() : undefined));
    const lines = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const id of [createId, cmdId, 'req-refused-0001', wsCorr]) assert.ok(lines.some((l) => l.correlationId === id), `a log line carries ${id}`);
    assert.ok(lines.some((l) => l.correlationId === wsCorr && l.msg === 'ws connected'));
    for (const id of mqttCorr) {
      assert.ok(lines.some((l) => l.correlationId === id && l.msg === 'mqtt connected'), `mqtt connected logged under ${id}`);
      assert.ok(lines.some((l) => l.correlationId === id && l.msg === 'mqtt closed'), `mqtt closed logged under ${id}`);
    }
    // ...and no credential is anywhere in them.
    for (const [name, secret] of [['JWT', jwt], ['JWT signature', jwt.split('.')[2]!], ['bad JWT', badJwt], ['API key', key], ['API key secret', secretPart], ['wrong API key', wrongKey], ['cluster secret', CLUSTER_SECRET]] as const) {
      assert.ok(!out.includes(secret), `the ${name} appears in the hub's output`);
    }
  });
});
