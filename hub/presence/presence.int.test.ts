// test-run: serial (timing assertions; scripts/test.mjs runs these one at a time after the rest)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient } from '../testing/wsClient.ts';
import { connect as mqttConnect } from '../mqtt/mqttTestKit.ts';
import { Redis } from 'ioredis';

/**
 * Presence across real hub processes sharing the real Redis and NATS. The heartbeat and TTL are the
 * defaults (2 s, 10 s), so the crash test measures the documented bound (entries gone within 15 s).
 * Each test uses its own orgs; the per-scope cap is 3 here so that the cap is reachable.
 */
async function until<T>(fn: () => Promise<T | undefined | false>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('presence', () => {
  let issuer: TestIssuer;
  let mqttUrl: string;
  let node1: HubProcess;
  let node2: HubProcess;
  let env: Record<string, string>;
  const clients: TestClient[] = [];
  const closers: (() => Promise<unknown>)[] = [];

  const get = async (hub: HubProcess, org: string, path: string, sub = 'admin-1', roles = ['admin']) => {
    const r = await fetch(`${hub.url}${path}`, { headers: { authorization: `Bearer ${await issuer.token(org, sub, roles)}` } });
    return { status: r.status, body: (await r.json()) as any };
  };
  const ws = async (hub: HubProcess, org: string, sub: string, roles = ['device']) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub, roles));
    clients.push(c);
    return c;
  };
  const subs = (body: any) => (body.entries as any[]).map((e) => e.sub).sort();

  before(async () => {
    issuer = await createTestIssuer();
    // A prefix of this file's own: every presence-enabled hub sharing a prefix reaps the others'
    // dead nodes and announces the leaves on its own bus, and other test files run hubs on private
    // NATS servers (a separate cluster that must not share presence data; docs/presence.md).
    env = { ...issuer.env, ORGHUB_PRESENCE_PREFIX: `test:presence:${testOrg('p')}:`, ORGHUB_PRESENCE_NAMESPACES: 'rooms', ORGHUB_PRESENCE_MAX_PER_TOPIC: '3', ORGHUB_PRESENCE_ORG_EVENTS: 'on', ORGHUB_EVENT_STORE: 'none' };
    // One at a time, with a generous deadline: the development machine is shared and often busy.
    const mqttPort = await freePort();
    mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
    node1 = await startHubProcess({ ...env, ORGHUB_MQTT_PORT: String(mqttPort), ORGHUB_MQTT_RATE: '100000' }, { timeoutMs: 45_000 });
    node2 = await startHubProcess(env, { timeoutMs: 45_000 });
  });

  after(async () => {
    for (const c of clients) await c.close();
    for (const c of closers) await c().catch(() => {});
    await Promise.all([node1?.stop(), node2?.stop()]);
    // This file's prefix is its own: drop what the killed nodes left (the others retired cleanly)
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const keys = await redis.keys(`${env.ORGHUB_PRESENCE_PREFIX}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });

  it('presence - connections on two nodes (WebSocket and MQTT) should be listed from either node with sub, client id, transport, node and since', async () => {
    const org = testOrg();
    await ws(node1, org, 'd1');
    const mq = await mqttConnect(mqttUrl, await issuer.token(org, 'm1', ['device']), { clientId: 'meter-1' });
    closers.push(() => mq.client.endAsync(true));
    await ws(node2, org, 'd2');

    const r = await until(async () => {
      const x = await get(node2, org, '/v1/presence');
      return x.body.entries?.length === 3 ? x : undefined;
    }, 5000, 'three entries');
    assert.equal(r.status, 200);
    assert.deepEqual(subs(r.body), ['d1', 'd2', 'm1']);
    const m = r.body.entries.find((e: any) => e.sub === 'm1');
    assert.deepEqual([m.transport, m.clientId], ['mqtt', 'meter-1']);
    assert.notEqual(r.body.entries.find((e: any) => e.sub === 'd1').node, r.body.entries.find((e: any) => e.sub === 'd2').node);
    assert.ok(Date.parse(m.since) <= Date.now());
    const stats = await get(node1, org, '/v1/presence_stats');
    assert.deepEqual(stats.body, { scope: '@org', connections: 3, users: 3, truncated: false });

    // A device has no grant on $presence: 403
    const denied = await get(node1, org, '/v1/presence', 'd1', ['device']);
    assert.deepEqual([denied.status, denied.body.error.code], [403, 'forbidden']);
    // Another org sees nobody of this one (positive control above)
    const other = await get(node1, testOrg(), '/v1/presence');
    assert.deepEqual([other.status, other.body.entries, other.body.connections], [200, [], 0]);
  });

  it('presence - per-topic join and leave should reach granted subscribers of $presence/<topic> only, and a scope past its cap should only count', async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const watcher = await ws(node2, orgA, 'ops', ['admin']);
    assert.equal((await watcher.request({ op: 'sub', topic: '$presence/rooms/r1' })).op, 'ok');
    const otherOrg = await ws(node2, orgB, 'ops', ['admin']);
    assert.equal((await otherOrg.request({ op: 'sub', topic: '$presence/rooms/r1' })).op, 'ok');
    const device = await ws(node1, orgA, 'd9');
    assert.equal((await device.request({ op: 'sub', topic: '$presence/rooms/r1' })).code, 'forbidden');
    const spoof = await watcher.request({ op: 'pub', topic: '$presence/rooms/r1', data: { event: 'join', sub: 'ghost' } });
    assert.equal(spoof.code, 'forbidden');
    // Even an explicit acl grant may not forge presence events: only the hub publishes there
    const granted = await TestClient.connect(node1.wsUrl, await issuer.token(orgA, 'x', [], { acl: { pub: ['$presence/rooms/r1'], sub: [] } }));
    clients.push(granted);
    assert.equal((await granted.request({ op: 'pub', topic: '$presence/rooms/r1', data: { event: 'join', sub: 'ghost' } })).code, 'forbidden');

    const member = await ws(node1, orgA, 'u1', ['admin']);
    assert.equal((await member.request({ op: 'sub', topic: 'rooms/r1' })).op, 'ok');
    const join = await watcher.waitFor((f) => f.op === 'msg' && f.topic === '$presence/rooms/r1' && f.data.event === 'join');
    assert.deepEqual([join.data.sub, join.data.transport, join.data.scope], ['u1', 'ws', 'rooms/r1']);
    const listed = await get(node2, orgA, '/v1/presence?topic=rooms/r1');
    assert.deepEqual(subs(listed.body), ['u1']);
    assert.equal((await member.request({ op: 'unsub', topic: 'rooms/r1' })).op, 'ok');
    await watcher.waitFor((f) => f.op === 'msg' && f.topic === '$presence/rooms/r1' && f.data.event === 'leave' && f.data.sub === 'u1');
    assert.deepEqual((await get(node2, orgA, '/v1/presence?topic=rooms/r1')).body.entries, []);
    assert.equal(otherOrg.messages().length, 0, 'org B heard nothing of org A');
    assert.equal(device.messages().length, 0);

    // Cap 3: five members are counted, three listed
    for (let i = 0; i < 5; i++) {
      const c = await ws(i % 2 ? node1 : node2, orgA, `m${i}`, ['admin']);
      assert.equal((await c.request({ op: 'sub', topic: 'rooms/r2' })).op, 'ok');
    }
    const capped = await until(async () => {
      const x = await get(node1, orgA, '/v1/presence_stats?topic=rooms/r2');
      return x.body.connections === 5 ? x : undefined;
    }, 5000, 'five connections counted');
    assert.equal(capped.body.truncated, true);
    assert.equal((await get(node1, orgA, '/v1/presence?topic=rooms/r2')).body.entries.length, 3);
    const notConfigured = await get(node1, orgA, '/v1/presence?topic=devices/d1');
    assert.deepEqual([notConfigured.status, notConfigured.body.error.code], [400, 'invalid']);
  });

  it('presence - the entries of a node killed with -9 should be gone within 15 s, with leave events', async () => {
    const org = testOrg();
    const doomed = await startHubProcess(env, { timeoutMs: 45_000 });
    closers.push(() => doomed.stop('SIGKILL'));
    const watcher = await ws(node1, org, 'ops', ['admin']);
    assert.equal((await watcher.request({ op: 'sub', topic: '$presence/@org' })).op, 'ok');
    await ws(doomed, org, 'victim');
    await ws(node2, org, 'survivor');
    await until(async () => subs((await get(node1, org, '/v1/presence')).body).includes('victim'), 5000, 'victim listed');

    const killedAt = Date.now();
    await doomed.stop('SIGKILL');
    await until(async () => !subs((await get(node2, org, '/v1/presence')).body).includes('victim'), 15_000, 'victim reaped');
    const elapsed = Date.now() - killedAt;
    assert.ok(elapsed < 15_000, `reaped after ${elapsed} ms`);
    // The reap and its leave event are one step of the reaping node: the event follows at once.
    await watcher.waitFor((f) => f.op === 'msg' && f.data?.event === 'leave' && f.data.sub === 'victim', 5_000);
    // The survivor (positive control) is still there
    assert.ok(subs((await get(node2, org, '/v1/presence')).body).includes('survivor'));
  });

  it('presence - a node that cannot reach NATS should leave the reap of a dead node (and its leave events) to nodes that can announce them', async () => {
    const org = testOrg();
    // Heartbeats every 100 ms, so without the guard it wins nearly every reap race, and drops the
    // leaves: its bus throws `unavailable` (this was the defect: a node whose NATS was not yet
    // connected at start, or on another cluster, took the reap and the events were lost).
    const deafId = `deaf-${org}`;
    const deaf = await startHubProcess({ ...env, ORGHUB_NODE_ID: deafId, NATS_URL: `nats://127.0.0.1:${await freePort()}`, ORGHUB_PRESENCE_HEARTBEAT_MS: '100' }, { waitReady: false });
    closers.push(() => deaf.stop('SIGKILL'));
    // Control: the deaf node heartbeats into the same store, so it is one of the reapers
    const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    closers.push(() => redis.quit());
    await until(async () => (await redis.exists(`${env.ORGHUB_PRESENCE_PREFIX}alive:${deafId}`)) === 1, 45_000, 'NATS-less hub heartbeating');
    const doomed = await startHubProcess(env, { timeoutMs: 45_000 });
    closers.push(() => doomed.stop('SIGKILL'));
    const watcher = await ws(node1, org, 'ops', ['admin']);
    assert.equal((await watcher.request({ op: 'sub', topic: '$presence/@org' })).op, 'ok');
    await ws(doomed, org, 'victim');
    await until(async () => subs((await get(node1, org, '/v1/presence')).body).includes('victim'), 5000, 'victim listed');

    await doomed.stop('SIGKILL');
    await until(async () => !subs((await get(node2, org, '/v1/presence')).body).includes('victim'), 15_000, 'victim reaped');
    const leave = await watcher.waitFor((f) => f.op === 'msg' && f.data?.event === 'leave' && f.data.sub === 'victim', 5_000);
    assert.equal(leave.data.scope, '@org');
    assert.equal(await redis.exists(`${env.ORGHUB_PRESENCE_PREFIX}alive:${deafId}`), 1, 'the deaf node was a reaper all along');
  });
});
