import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { sleep } from '../testing/wsClient.ts';
import { connect as mqttConnect, type MqttHub } from '../mqtt/mqttTestKit.ts';
import { apiKeyKey } from './redisApiKeyStore.ts';
import { startTwoNodes } from './testNodes.ts';

const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

type Kind = 'retained' | 'mqttSessions' | 'history' | 'presence' | 'apiKeys' | 'revocations' | 'limits' | 'fleet' | 'directory';

/** Which store a Redis key holding `org` in its name belongs to (the names of each store's key functions). */
function kindOf(key: string, org: string): Kind | 'other' {
  if (key === `orghub:org:${org}`) return 'directory';
  if (/^orghub:retained(-topics|-bytes)?:/.test(key)) return 'retained';
  if (key.startsWith('orghub:mqtt:')) return 'mqttSessions';
  if (key.startsWith('orghub:history:')) return 'history';
  if (key.startsWith('orghub:presence:')) return 'presence';
  if (key.startsWith('orghub:apikeys:')) return 'apiKeys';
  if (key.startsWith('orghub:revocations:')) return 'revocations';
  if (key.startsWith('orghub:lim:')) return 'limits';
  if (key.startsWith('orghub:fleet:')) return 'fleet';
  return 'other';
}

/**
 * Offboarding erases the org's Redis data (retained messages, MQTT sessions and queues, history
 * streams, presence entries, API keys, revocations), against two real hub processes and the shared
 * Redis; another org holding data of every kind is the control.
 */
describe('offboarding erases the org from Redis', () => {
  let issuer: TestIssuer;
  let h1: MqttHub;
  let h2: MqttHub;
  let redis: Redis;
  let platform: Record<string, string>;

  const api = async (h: MqttHub, method: string, path: string, auth: Record<string, string>, body?: unknown) => {
    const r = await fetch(`${h.hub.url}${path}`, { method, headers: { ...auth, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as any };
  };
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  /** Every key whose name holds the org (test orgs are random, so nothing else matches), by kind. */
  const keysOf = async (org: string) => {
    const out: Record<string, string[]> = {};
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `*${org}*`, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) (out[kindOf(k, org)] ??= []).push(k);
    } while (cursor !== '0');
    for (const v of Object.values(out)) v.sort();
    return out;
  };
  const until = async (what: string, cond: () => Promise<boolean>, ms = 10_000) => {
    const deadline = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
      await sleep(50);
    }
  };

  /** Gives `org` data of every kind, through the real paths (a presence entry is planted: see below). */
  const seed = async (org: string) => {
    assert.equal((await api(h1, 'POST', '/v1/orgs', platform, { org })).status, 201);
    const admin = bearer(await issuer.token(org, 'root', ['admin']));
    // API key, revocation
    const key = await api(h2, 'POST', '/v1/apikeys', admin, { roles: ['service'] });
    assert.equal(key.status, 201);
    assert.equal((await api(h1, 'POST', '/v1/revocations', admin, { sub: 'gone' })).status, 200);
    // retained message, and a persistent MQTT 5 session with a queued message
    const dev = await issuer.token(org, 'd1', ['service']);
    const pub = await mqttConnect(h1.tcpUrl, dev, { protocolVersion: 5, clientId: `pub-${org}` });
    await pub.client.publishAsync('telemetry/r', 'kept', { retain: true, qos: 1 });
    const persistent = await mqttConnect(h2.tcpUrl, dev, { protocolVersion: 5, clientId: `sess-${org}`, clean: false, properties: { sessionExpiryInterval: 3600 } });
    await persistent.client.subscribeAsync('telemetry/q', { qos: 1 });
    await persistent.client.endAsync();
    await pub.client.publishAsync('telemetry/q', 'queued', { qos: 1 });
    await pub.client.endAsync();
    // an open fleet command (the org's open-command set)
    assert.equal((await api(h1, 'POST', '/v1/devices/d1/commands', admin, { type: 'reboot' })).status, 202);
    // history (namespace chat), over HTTP publish
    assert.equal((await api(h2, 'POST', '/v1/publish', bearer(key.body.key), { topic: 'chat/room', data: { m: 1 } })).status, 200);
    // A presence entry left by a node that died before its peers reaped it (live sessions leave on suspension).
    await redis.hset(`orghub:presence:e:${org}:@org`, 'dead-session', JSON.stringify({ sub: 'ghost' }));
    // Real rate-limit buckets expire within seconds of disuse: a long-lived one (a user that never connects) keeps the comparison stable.
    await redis.hset(`orghub:lim:b:pub:u:${org}:planted`, 'tokens', '1');
    await redis.pexpire(`orghub:lim:b:pub:u:${org}:planted`, 120_000);
    await until(`${org} holds data of every kind`, async () => {
      const k = await keysOf(org);
      return ['retained', 'mqttSessions', 'history', 'presence', 'apiKeys', 'revocations', 'limits', 'fleet'].every((kind) => (k[kind]?.length ?? 0) > 0) && (k.mqttSessions?.some((x) => x.includes(':queue:')) ?? false);
    });
    return { key: key.body.key as string, keyId: key.body.apiKey.id as string };
  };

  before(async () => {
    issuer = await createTestIssuer();
    ({ nodes: [h1, h2] } = await startTwoNodes(issuer, { ORGHUB_HISTORY_NAMESPACES: 'chat=100:300' }));
    redis = new Redis(REDIS_URL);
    platform = bearer(await issuer.token(testOrg('ops'), 'operator', ['platform']));
  });
  after(async () => {
    redis?.disconnect();
    await Promise.all([h1?.hub.stop(), h2?.hub.stop()]);
  });

  it('offboard - erases retained messages, MQTT sessions and queues, history, presence, API keys, revocations and rate-limit keys of the org; another org keeps each kind', async () => {
    const gone = testOrg('gone');
    const kept = testOrg('kept');
    const g = await seed(gone);
    const k = await seed(kept);
    /** The kept org's keys, but of its real rate-limit buckets (which come and go with use) only the planted one. */
    const stable = async (org: string) => {
      const k = await keysOf(org);
      k.limits = (k.limits ?? []).filter((x) => x.endsWith(':planted'));
      return k;
    };
    const keptBefore = await stable(kept);
    assert.deepEqual(keptBefore.limits, [`orghub:lim:b:pub:u:${kept}:planted`]);
    assert.ok(await redis.exists(apiKeyKey(g.keyId)), 'positive control: the key record exists');

    assert.equal((await api(h2, 'POST', `/v1/orgs/${gone}/suspend`, platform)).status, 200);
    const r = await api(h1, 'POST', `/v1/orgs/${gone}/offboard`, platform, { confirm: gone });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const erased = r.body.redisKeysDeleted;
    for (const kind of ['retained', 'mqttSessions', 'history', 'presence', 'apiKeys', 'revocations', 'limits', 'fleet']) assert.ok(erased[kind] > 0, `${kind}: ${JSON.stringify(erased)}`);

    // nothing of the org is left in Redis but its tombstone in the directory
    const left = await keysOf(gone);
    assert.deepEqual(Object.keys(left), ['directory'], JSON.stringify(left));
    assert.equal(await redis.exists(apiKeyKey(g.keyId)), 0, 'the key record is gone');
    assert.equal(await redis.sismember('orghub:revocation-orgs', gone), 0);
    // the other org: every key it had, and its key still works
    assert.deepEqual(await stable(kept), keptBefore);
    assert.equal(await redis.exists(apiKeyKey(k.keyId)), 1);
    assert.equal(await redis.sismember('orghub:revocation-orgs', kept), 1);
    assert.equal((await api(h2, 'POST', '/v1/publish', bearer(k.key), { topic: 'telemetry/x', data: 1 })).status, 200);
    // the other org's retained message is still served
    const sub = await mqttConnect(h2.tcpUrl, await issuer.token(kept, 'd2', ['service']), { protocolVersion: 5, clientId: `check-${kept}` });
    await sub.client.subscribeAsync('telemetry/r', { qos: 1 });
    assert.equal((await sub.waitFor(1, (m) => m.retain)).at(0)?.payload.toString(), 'kept');
    await sub.client.endAsync();

    // offboarding again (e.g. after a Redis failure) finds nothing more to erase
    const again = await api(h2, 'POST', `/v1/orgs/${gone}/offboard`, platform, { confirm: gone });
    assert.equal(again.status, 200);
    assert.deepEqual(again.body.redisKeysDeleted, { retained: 0, mqttSessions: 0, history: 0, presence: 0, apiKeys: 0, revocations: 0, limits: 0, fleet: 0 });
  });
});
