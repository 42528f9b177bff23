import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import WebSocket from 'ws';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { TestClient } from '../testing/wsClient.ts';
import { until, type MqttHub } from '../mqtt/mqttTestKit.ts';
import { startTwoNodes } from './testNodes.ts';

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/orghub';

/** API keys against two real hub processes on the shared Redis, NATS and Postgres. */
describe('api keys across two nodes', () => {
  let issuer: TestIssuer;
  let h1: MqttHub;
  let h2: MqttHub;
  let pool: pg.Pool;
  const clients: TestClient[] = [];

  const api = async (h: MqttHub, method: string, path: string, auth: Record<string, string>, body?: unknown, raw?: string) => {
    const r = await fetch(`${h.hub.url}${path}`, { method, headers: { ...auth, ...(body !== undefined || raw !== undefined ? { 'content-type': 'application/json' } : {}) }, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)) });
    return { status: r.status, body: (await r.json()) as any };
  };
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const publish = (h: MqttHub, auth: Record<string, string>) => api(h, 'POST', '/v1/publish', auth, { topic: 'telemetry/x', data: { v: 1 } });

  before(async () => {
    issuer = await createTestIssuer();
    ({ nodes: [h1, h2] } = await startTwoNodes(issuer));
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await pool?.end();
    await Promise.all([h1?.hub.stop(), h2?.hub.stop()]);
  });

  it('apikeys - lifecycle: created once, used over HTTP (Bearer, X-Api-Key) and the WS upgrade, listed with last use, revoked at once on both nodes, every step recorded', async () => {
    const org = testOrg();
    const admin = bearer(await issuer.token(org, 'root', ['admin']));
    const created = await api(h1, 'POST', '/v1/apikeys', admin, { name: 'ingest', roles: ['service'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const key: string = created.body.key;
    assert.match(key, /^ohk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const id: string = created.body.apiKey.id;
    assert.deepEqual({ ...created.body.apiKey, createdAt: undefined }, { id, name: 'ingest', roles: ['service'], acl: null, createdAt: undefined, createdBy: 'root', expiresAt: null, lastUsedAt: null, revokedAt: null });

    // used on both nodes, both header forms, and on the WebSocket upgrade
    assert.equal((await publish(h1, bearer(key))).status, 200);
    assert.equal((await publish(h2, { 'x-api-key': key })).status, 200);
    const viaBearer = await TestClient.connect(h2.hub.wsUrl, key);
    clients.push(viaBearer);
    assert.equal((await viaBearer.request({ op: 'sub', topic: 'telemetry/#' })).op, 'ok');
    const viaHeader = await new Promise<WebSocket>((resolve, reject) => {
      const w = new WebSocket(h1.hub.wsUrl, ['orghub.v1.json'], { headers: { 'x-api-key': key } });
      w.once('open', () => resolve(w));
      w.once('error', reject);
    });
    let headerClosed: number | undefined;
    viaHeader.on('close', (code) => (headerClosed = code));
    // a wrong secret for the same id is refused
    const forged = `${key.slice(0, 21)}${key.at(21) === 'A' ? 'B' : 'A'}${key.slice(22)}`;
    assert.equal((await publish(h1, bearer(forged))).status, 401);

    // listed (never the key, never the hash), with its last use
    assert.ok(
      await until(async () => {
        const l = await api(h2, 'GET', '/v1/apikeys', admin);
        return l.status === 200 && l.body.apiKeys.length === 1 && l.body.apiKeys[0].lastUsedAt !== null;
      }),
      'lastUsedAt recorded',
    );
    const listed = await api(h2, 'GET', '/v1/apikeys', admin);
    assert.doesNotMatch(JSON.stringify(listed.body), new RegExp(key.slice(21)));
    assert.equal(listed.body.apiKeys[0].hash, undefined);

    // revoked on node 1: refused at once on node 2 too, and its live sockets close with 4101
    const del = await api(h1, 'DELETE', `/v1/apikeys/${id}`, admin);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.notEqual(del.body.apiKey.revokedAt, null);
    const afterRevoke = await publish(h2, bearer(key));
    assert.equal(afterRevoke.status, 401);
    assert.equal((await publish(h1, { 'x-api-key': key })).status, 401);
    assert.ok(await until(() => viaBearer.closeCode !== undefined && headerClosed !== undefined));
    assert.equal(viaBearer.closeCode, 4101);
    assert.equal(headerClosed, 4101);
    await assert.rejects(TestClient.connect(h1.hub.wsUrl, key), (e: any) => e.status === 401);

    // every step recorded in the access stream, without the secret
    const rows = (await pool.query(`SELECT type, data::text AS data, metadata->>'actor' AS actor FROM events WHERE org_id = $1 AND stream_id = 'access' ORDER BY global_position`, [org])).rows;
    assert.deepEqual(rows.map((r) => r.type), ['access.apikey_created', 'access.apikey_revoked']);
    assert.deepEqual(rows.map((r) => r.actor), ['root', 'root']);
    const all = (await pool.query(`SELECT data::text || metadata::text AS t FROM events WHERE org_id = $1`, [org])).rows.map((r) => r.t).join('\n');
    assert.doesNotMatch(all, new RegExp(key.slice(21)), 'the secret is in no event');
    assert.ok(await until(async () => (await pool.query(`SELECT 1 FROM events WHERE org_id = $1 AND type = 'audit.admin.action' AND data->>'id' = $2`, [org, id])).rowCount === 2), 'both steps audited');
  });

  it('apikeys - another org sees none of them and gets 404 for their ids; non-admins and service keys get 403', async () => {
    const orgA = testOrg();
    const orgB = testOrg();
    const adminA = bearer(await issuer.token(orgA, 'root', ['admin']));
    const adminB = bearer(await issuer.token(orgB, 'root', ['admin']));
    const created = await api(h1, 'POST', '/v1/apikeys', adminA, { roles: ['service'] });
    assert.equal(created.status, 201);
    const id = created.body.apiKey.id;
    assert.deepEqual((await api(h2, 'GET', '/v1/apikeys', adminB)).body, { apiKeys: [] });
    const other = await api(h2, 'DELETE', `/v1/apikeys/${id}`, adminB);
    assert.deepEqual([other.status, other.body.error.code], [404, 'not_found']);
    assert.equal((await api(h1, 'DELETE', '/v1/apikeys/0123456789abcdef', adminA)).status, 404, 'unknown id: the same 404');
    // A's key is unharmed (positive control) and publishes into A only
    assert.equal((await publish(h2, bearer(created.body.key))).status, 200);
    assert.equal((await api(h1, 'GET', '/v1/apikeys', adminA)).body.apiKeys.length, 1);
    // non-admins: a device token, and the service key itself
    for (const auth of [bearer(await issuer.token(orgA, 'dev', ['device'])), bearer(created.body.key)]) {
      for (const [m, p, b] of [['POST', '/v1/apikeys', { roles: ['admin'] }], ['GET', '/v1/apikeys', undefined], ['DELETE', `/v1/apikeys/${id}`, undefined]] as const) {
        const r = await api(h1, m, p, auth, b);
        assert.deepEqual([r.status, r.body.error?.code], [403, 'forbidden'], `${m} ${p}`);
      }
    }
    // positive control: A's admin revokes it
    assert.equal((await api(h2, 'DELETE', `/v1/apikeys/${id}`, adminA)).status, 200);
  });

  it('apikeys - hostile input: malformed, oversized, unknown roles or fields, bad expiry, odd ids; an expired key stops working', async () => {
    const org = testOrg();
    const admin = bearer(await issuer.token(org, 'root', ['admin']));
    const cases: [string, Awaited<ReturnType<typeof api>>, number, string][] = [
      ['not JSON', await api(h1, 'POST', '/v1/apikeys', admin, undefined, '{"roles":'), 400, 'bad_frame'],
      ['oversized', await api(h1, 'POST', '/v1/apikeys', admin, { roles: ['service'], name: 'x'.repeat(20_000) }), 413, 'too_large'],
      ['unknown role', await api(h1, 'POST', '/v1/apikeys', admin, { roles: ['platform'] }), 400, 'invalid'],
      ['org field', await api(h1, 'POST', '/v1/apikeys', admin, { roles: ['service'], org: 'other' }), 400, 'invalid'],
      ['bad acl', await api(h1, 'POST', '/v1/apikeys', admin, { roles: ['service'], acl: { pub: ['a/#/b'] } }), 400, 'invalid'],
      ['past expiry', await api(h1, 'POST', '/v1/apikeys', admin, { roles: ['service'], expiresAt: '2020-01-01T00:00:00Z' }), 400, 'invalid'],
      ['odd id', await api(h1, 'DELETE', '/v1/apikeys/..%2F..%2Fx', admin), 404, 'not_found'],
      ['no token', await api(h1, 'GET', '/v1/apikeys', {}), 401, 'unauthorized'],
      ['malformed key', await api(h1, 'GET', '/v1/apikeys', bearer('ohk_nothex_x')), 401, 'unauthorized'],
    ];
    for (const [name, r, status, code] of cases) assert.deepEqual([r.status, r.body.error?.code], [status, code], name);
    // an expiring key works, then stops
    const short = await api(h2, 'POST', '/v1/apikeys', admin, { roles: ['service'], expiresAt: new Date(Date.now() + 1500).toISOString() });
    assert.equal(short.status, 201);
    assert.equal((await publish(h1, bearer(short.body.key))).status, 200);
    assert.ok(await until(async () => (await publish(h1, bearer(short.body.key))).status === 401, 6000), 'refused once expired');
    const r = await publish(h2, bearer(short.body.key));
    assert.equal(r.body.error.message, 'api_key_expired');
  });
});
