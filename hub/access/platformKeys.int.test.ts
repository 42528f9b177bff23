import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import WebSocket from 'ws';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { TestClient } from '../testing/wsClient.ts';
import { connect as mqttConnect, refusedCode, until, type MqttHub } from '../mqtt/mqttTestKit.ts';
import { DEV_APIKEY_PEPPER } from './access.ts';
import { createKeyHasher, newApiKey, PLATFORM_KEY_ORG } from './apiKey.ts';
import { apiKeyKey, orgApiKeysKey } from './redisApiKeyStore.ts';
import { startTwoNodes } from './testNodes.ts';

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/orghub';
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);

/** Platform API keys against two real hub processes, the operator's CLI and the shared Redis, NATS and Postgres. */
describe('platform api keys across two nodes', () => {
  let issuer: TestIssuer;
  let h1: MqttHub;
  let h2: MqttHub;
  let secret: string;
  let pool: pg.Pool;
  let redis: Redis;
  let operator: Record<string, string>;
  /** Every platform key id a test made: removed from the shared Redis afterwards (they would count toward the bound for 7 days). */
  const made: string[] = [];

  const api = async (h: MqttHub, method: string, path: string, auth: Record<string, string>, body?: unknown) => {
    const r = await fetch(`${h.hub.url}${path}`, { method, headers: { ...auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as any };
  };
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const cli = async (...args: string[]) => {
    try {
      const r = await run(process.execPath, ['--import', 'tsx', 'scripts/platform-key.ts', ...args], { cwd: ROOT, env: { ...process.env, ORGHUB_CLUSTER_SECRET: secret, DATABASE_URL }, timeout: 60_000 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e: any) {
      return { code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string };
    }
  };
  const platformKey = async (name: string) => {
    const r = await api(h1, 'POST', '/v1/platform/apikeys', operator, { name });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    made.push(r.body.apiKey.id);
    return { key: r.body.key as string, id: r.body.apiKey.id as string };
  };
  const orgKey = async (org: string, roles: string[]) => {
    const r = await api(h1, 'POST', '/v1/apikeys', bearer(await issuer.token(org, 'root', ['admin'])), { roles });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.key as string;
  };

  before(async () => {
    issuer = await createTestIssuer();
    ({ nodes: [h1, h2], secret } = await startTwoNodes(issuer));
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    redis = new Redis(REDIS_URL);
    operator = bearer(await issuer.token(testOrg('ops'), 'operator', ['platform']));
  });
  after(async () => {
    if (redis && made.length) await redis.multi().del(...made.map(apiKeyKey)).srem(orgApiKeysKey(PLATFORM_KEY_ORG), ...made).exec();
    redis?.disconnect();
    await pool?.end();
    await Promise.all([h1?.hub.stop(), h2?.hub.stop()]);
  });

  it('platform keys - lifecycle: the first from the CLI, more over the API; used on /v1/orgs (Bearer, X-Api-Key) on both nodes; listed with last use; revoked (API and CLI) and refused at once on both nodes; every step recorded', async () => {
    // the first key, from the operator's shell: shown once on stdout
    const created = await cli('create', '--name', 'bootstrap');
    assert.equal(created.code, 0, created.stderr);
    const first = created.stdout.trim();
    assert.match(first, /^ohk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const firstId = first.slice(4, 20);
    made.push(firstId);

    // it runs the whole org lifecycle, on both nodes and both header forms
    const org = testOrg();
    const c = await api(h1, 'POST', '/v1/orgs', bearer(first), { org, tier: 'standard' });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.equal((await api(h2, 'GET', '/v1/orgs', { 'x-api-key': first })).body.orgs.some((o: any) => o.org === org), true);
    assert.equal((await api(h2, 'PATCH', `/v1/orgs/${org}`, { 'x-api-key': first }, { tier: 'enterprise' })).body.org.tier, 'enterprise');
    assert.equal((await api(h1, 'POST', `/v1/orgs/${org}/suspend`, bearer(first), { reason: 'test' })).status, 200);
    assert.equal((await api(h2, 'POST', `/v1/orgs/${org}/resume`, bearer(first))).status, 200);

    // a second key, from the API (a platform JWT); the CLI lists both, the API too, with the last use
    const second = await platformKey('automation');
    assert.equal((await api(h2, 'GET', `/v1/orgs/${org}`, bearer(second.key))).status, 200);
    const listed = await cli('list');
    assert.equal(listed.code, 0, listed.stderr);
    const ids = (JSON.parse(listed.stdout).apiKeys as any[]).map((k) => k.id);
    assert.ok(ids.includes(firstId) && ids.includes(second.id), 'the CLI lists both');
    assert.ok(
      await until(async () => {
        const l = await api(h2, 'GET', '/v1/platform/apikeys', operator);
        const mine = l.body.apiKeys.find((k: any) => k.id === firstId);
        return l.status === 200 && mine?.lastUsedAt !== null && mine?.roles.join() === 'platform';
      }),
      'listed with its last use',
    );
    assert.doesNotMatch(JSON.stringify((await api(h1, 'GET', '/v1/platform/apikeys', operator)).body), new RegExp(first.slice(21)), 'never the secret');

    // revoked over the API on node 1: refused at once on node 2 (and 1); the other key still works
    const del = await api(h1, 'DELETE', `/v1/platform/apikeys/${second.id}`, operator);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    for (const [h, auth] of [[h2, bearer(second.key)], [h1, { 'x-api-key': second.key }]] as const) {
      const r = await api(h, 'GET', '/v1/orgs', auth);
      assert.equal(r.status, 401);
      assert.ok(['token_revoked', 'api_key_revoked'].includes(r.body.error.message), r.body.error.message);
    }
    assert.equal((await api(h2, 'GET', '/v1/orgs', bearer(first))).status, 200, 'positive control: the other key');

    // revoked from the CLI: refused at once on both nodes (announced over NATS)
    const rv = await cli('revoke', firstId);
    assert.equal(rv.code, 0, rv.stderr);
    assert.match(rv.stderr, /announced to every node/);
    for (const h of [h1, h2]) {
      const r = await api(h, 'GET', '/v1/orgs', bearer(first));
      assert.deepEqual([r.status, r.body.error?.code, r.body.error?.message], [401, 'unauthorized', 'token_revoked']);
    }
    assert.equal((await cli('revoke', '0123456789abcdef')).code, 1, 'an unknown id');
    assert.equal((await api(h1, 'DELETE', '/v1/platform/apikeys/0123456789abcdef', operator)).status, 404);

    // recorded: the keys' lifecycle in _platform's access stream, the org's changes in its own stream with the key as actor
    const keyEvents = (await pool.query(`SELECT type, data->>'id' AS id, metadata->>'actor' AS actor FROM events WHERE org_id = $1 AND stream_id = 'access' AND data->>'id' = ANY($2) ORDER BY global_position`, [PLATFORM_KEY_ORG, [firstId, second.id]])).rows;
    assert.deepEqual(
      keyEvents.map((r) => [r.type, r.id]),
      [
        ['access.platform_key_created', firstId],
        ['access.platform_key_created', second.id],
        ['access.platform_key_revoked', second.id],
        ['access.platform_key_revoked', firstId],
      ],
    );
    assert.match(keyEvents[0].actor, /^cli:/);
    assert.equal(keyEvents[1].actor, 'operator');
    const orgEvents = (await pool.query(`SELECT type, metadata->>'actor' AS actor FROM events WHERE org_id = $1 AND stream_id = 'org' ORDER BY global_position`, [org])).rows;
    assert.deepEqual(orgEvents.map((r) => r.type), ['org.created', 'org.updated', 'org.suspended', 'org.resumed']);
    assert.ok(orgEvents.every((r) => r.actor === `apikey:${firstId}`), JSON.stringify(orgEvents));
    assert.ok(await until(async () => (await pool.query(`SELECT 1 FROM events WHERE org_id = $1 AND type = 'audit.admin.action' AND data->>'operatorOrg' = $2`, [org, PLATFORM_KEY_ORG])).rowCount === 4), 'each change audited in the org, naming the platform');
    assert.ok(await until(async () => (await pool.query(`SELECT 1 FROM events WHERE org_id = $1 AND type = 'audit.admin.action' AND data->>'id' = $2`, [PLATFORM_KEY_ORG, second.id])).rowCount === 2), 'key create and revoke audited in _platform');
  });

  it('platform keys - nobody else acts as platform: an org admin JWT, an org admin API key, a planted org key record with the platform role; no org key can be minted with it; a platform key cannot mint keys (exact codes, with positive controls)', async () => {
    const org = testOrg();
    const target = testOrg();
    const pk = await platformKey('positive-control');
    // positive control, same routes: the platform key creates and reads an org
    assert.equal((await api(h2, 'POST', '/v1/orgs', bearer(pk.key), { org: target })).status, 201);

    // an org admin's own API key, and an org admin's JWT: 403 forbidden on every org lifecycle route
    const adminKey = await orgKey(org, ['admin']);
    assert.equal((await api(h1, 'GET', '/v1/apikeys', bearer(adminKey))).status, 200, 'the admin key does work as an org admin');
    // a record planted in the store (a tampered or buggy write) naming a tenant org with the platform role
    const planted = newApiKey();
    const hasher = createKeyHasher(DEV_APIKEY_PEPPER);
    await redis.set(apiKeyKey(planted.id), JSON.stringify({ id: planted.id, org, name: 'planted', roles: ['platform', 'service'], hash: hasher.hash(planted.id, planted.secret), createdAt: Date.now(), createdBy: 'x' }), 'PX', 120_000);
    assert.equal((await api(h2, 'POST', '/v1/publish', bearer(planted.key), { topic: 'telemetry/x', data: 1 })).status, 200, 'the planted key is a valid org key');
    for (const auth of [bearer(adminKey), { 'x-api-key': adminKey }, bearer(await issuer.token(org, 'root', ['admin'])), bearer(planted.key)]) {
      for (const [m, p, b] of [['POST', '/v1/orgs', { org: testOrg() }], ['GET', '/v1/orgs', undefined], ['GET', `/v1/orgs/${target}`, undefined], ['PATCH', `/v1/orgs/${target}`, { tier: 'free' }], ['POST', `/v1/orgs/${target}/suspend`, {}], ['POST', `/v1/orgs/${target}/resume`, {}], ['GET', `/v1/orgs/${target}/export`, undefined], ['POST', `/v1/orgs/${target}/offboard`, { confirm: target }], ['POST', '/v1/platform/apikeys', {}], ['GET', '/v1/platform/apikeys', undefined], ['DELETE', `/v1/platform/apikeys/${pk.id}`, undefined]] as const) {
        const r = await api(h1, m, p, auth, b);
        assert.deepEqual([r.status, r.body.error?.code], [403, 'forbidden'], `${m} ${p} ${JSON.stringify(auth).slice(0, 40)}`);
      }
    }
    // a token claiming the platform keys' owner org is no token at all
    const owner = await api(h1, 'GET', '/v1/platform/apikeys', bearer(await issuer.token(PLATFORM_KEY_ORG, 'x', ['platform', 'admin'])));
    assert.deepEqual([owner.status, owner.body.error?.code, owner.body.error?.message], [401, 'unauthorized', 'bad_claim:org']);
    // an org key with the platform role cannot be minted
    const mint = await api(h1, 'POST', '/v1/apikeys', bearer(await issuer.token(org, 'root', ['admin'])), { roles: ['platform'] });
    assert.deepEqual([mint.status, mint.body.error?.code], [400, 'invalid']);
    // a platform key cannot mint, list or revoke platform keys (only a platform JWT or the CLI can)
    for (const [m, p, b] of [['POST', '/v1/platform/apikeys', {}], ['GET', '/v1/platform/apikeys', undefined], ['DELETE', `/v1/platform/apikeys/${pk.id}`, undefined]] as const) {
      const r = await api(h2, m, p, bearer(pk.key), b);
      assert.deepEqual([r.status, r.body.error?.code, r.body.error?.message], [401, 'unauthorized', 'api_key_platform_only'], `${m} ${p}`);
    }
    // nothing changed, and the platform key still works (positive control)
    const t = await api(h2, 'GET', `/v1/orgs/${target}`, bearer(pk.key));
    assert.deepEqual([t.status, t.body.org.status, t.body.org.tier], [200, 'active', 'standard']);
    assert.equal((await api(h1, 'GET', '/v1/platform/apikeys', operator)).body.apiKeys.find((k: any) => k.id === pk.id)?.revokedAt, null);
    await redis.del(apiKeyKey(planted.id));
  });

  it('platform keys - refused on every org-scoped surface (publish, audit and device reads, presence, org API keys, revocations, WS upgrade and in-band refresh, MQTT CONNECT); an org key passes the same doors', async () => {
    const org = testOrg();
    const pk = await platformKey('scoped');
    const service = await orgKey(org, ['service', 'admin']);
    const refusedHttp = async (auth: Record<string, string>) => {
      const out: [number, string, string][] = [];
      for (const [m, p, b] of [['POST', '/v1/publish', { topic: 'telemetry/x', data: 1 }], ['GET', '/v1/audit', undefined], ['GET', '/v1/devices', undefined], ['GET', '/v1/apikeys', undefined], ['POST', '/v1/revocations', { sub: 'x' }], ['GET', '/v1/presence', undefined]] as const) {
        const r = await api(h1, m, p, auth, b);
        out.push([r.status, r.body.error?.code ?? 'ok', r.body.error?.message ?? '']);
      }
      return out;
    };
    for (const auth of [bearer(pk.key), { 'x-api-key': pk.key }]) {
      for (const r of await refusedHttp(auth)) assert.deepEqual(r, [401, 'unauthorized', 'api_key_platform_only']);
    }
    // positive control: an org key through the same doors
    for (const [status] of await refusedHttp(bearer(service))) assert.ok(status < 300, String(status));

    // WebSocket upgrade: access_token, Authorization and X-Api-Key
    for (const h of [h1, h2]) await assert.rejects(TestClient.connect(h.hub.wsUrl, pk.key), (e: any) => e.status === 401 && e.body === 'api_key_platform_only');
    const viaHeader = await new Promise<number | undefined>((resolve) => {
      const w = new WebSocket(h2.hub.wsUrl, ['orghub.v1.json'], { headers: { 'x-api-key': pk.key } });
      w.once('open', () => {
        w.close();
        resolve(undefined);
      });
      w.once('unexpected-response', (_req, res) => resolve(res.statusCode));
      w.once('error', () => resolve(-1));
    });
    assert.equal(viaHeader, 401);
    // nor as an in-band refresh of a live org session, which stays open
    const ok = await TestClient.connect(h2.hub.wsUrl, service);
    const refresh = await ok.request({ op: 'auth', token: pk.key });
    assert.deepEqual([refresh.op, refresh.code, refresh.message], ['err', 'unauthorized', 'api_key_platform_only']);
    assert.equal((await ok.request({ op: 'auth', token: service })).op, 'ok', 'positive control: the org key refreshes');
    assert.equal(ok.closeCode, undefined);
    await ok.close();

    // MQTT CONNECT with the key as password: refused (5: 0x87 not authorized; 3.1.1: rc 5); an org key connects
    assert.equal(await refusedCode(h1.tcpUrl, pk.key, 5), 0x87);
    assert.equal(await refusedCode(h2.tcpUrl, pk.key, 4), 5);
    const m = await mqttConnect(h1.tcpUrl, service, { protocolVersion: 5, clientId: `c-${org}` });
    m.client.end(true);

    // and it still runs the org lifecycle (positive control)
    assert.equal((await api(h2, 'GET', '/v1/orgs', bearer(pk.key))).status, 200);
  });
});
