import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient } from '../testing/wsClient.ts';

/**
 * The bound on distinct history topics (streams) per org, ORGHUB_HISTORY_MAX_TOPICS = 2 here, on
 * two real hubs sharing Redis: a third topic is refused with `limit` on publish and on subscribe,
 * from either node; topics already kept still work; another org has its own count; a topic whose
 * stream expired frees its place.
 */
describe('history - bound on topics per org', () => {
  let issuer: TestIssuer;
  let node1: HubProcess;
  let node2: HubProcess;
  const clients: TestClient[] = [];

  before(async () => {
    issuer = await createTestIssuer();
    const env = { ...issuer.env, ORGHUB_EVENT_STORE: 'none', ORGHUB_HISTORY_NAMESPACES: 'chat=10:60,brief=10:1', ORGHUB_HISTORY_MAX_TOPICS: '2', ORGHUB_HISTORY_PREFIX: `test:history-bounds:${testOrg('h')}:` };
    [node1, node2] = await Promise.all([startHubProcess(env, { timeoutMs: 45_000 }), startHubProcess(env, { timeoutMs: 45_000 })]);
  });
  after(async () => {
    for (const c of clients) await c.close();
    await Promise.all([node1?.stop(), node2?.stop()]);
  });

  const ws = async (hub: HubProcess, org: string) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, 'u1', ['admin']));
    clients.push(c);
    return c;
  };

  it('should refuse a third topic of the org with limit on publish and subscribe, on either node, and keep the first two and other orgs working', async () => {
    const org = testOrg();
    const a = await ws(node1, org);
    const b = await ws(node2, org);
    assert.equal((await a.request({ op: 'pub', topic: 'chat/one', data: 1 })).op, 'ok');
    assert.equal((await b.request({ op: 'sub', topic: 'chat/two' })).op, 'ok'); // a subscribe starts a stream too
    for (const [c, f] of [[a, { op: 'pub', topic: 'chat/three', data: 1 }], [b, { op: 'pub', topic: 'chat/three', data: 1 }], [a, { op: 'sub', topic: 'chat/four' }]] as const) {
      const r = await c.request(f as any);
      assert.deepEqual([r.op, r.code], ['err', 'limit'], JSON.stringify(r));
      assert.match(r.message, /ORGHUB_HISTORY_MAX_TOPICS/);
    }
    // The topics already kept go on (positive control), from either node
    assert.equal((await b.request({ op: 'pub', topic: 'chat/one', data: 2 })).op, 'ok');
    assert.equal((await a.request({ op: 'pub', topic: 'chat/two', data: 1 })).op, 'ok');
    const sub = await a.request({ op: 'sub', topic: 'chat/one' });
    assert.deepEqual([sub.op, sub.offset], ['ok', 2]);
    // Another org counts its own topics
    const o = await ws(node2, testOrg());
    for (const t of ['chat/three', 'chat/four']) assert.equal((await o.request({ op: 'pub', topic: t, data: 1 })).op, 'ok');
  });

  it('should count a topic no more once its stream expired', async () => {
    const org = testOrg();
    const a = await ws(node1, org);
    assert.equal((await a.request({ op: 'pub', topic: 'chat/kept', data: 1 })).op, 'ok');
    assert.equal((await a.request({ op: 'pub', topic: 'brief/gone', data: 1 })).op, 'ok'); // kept 1 s
    assert.equal((await a.request({ op: 'pub', topic: 'chat/new', data: 1 })).code, 'limit');
    const deadline = Date.now() + 10_000;
    let r = await a.request({ op: 'pub', topic: 'chat/new', data: 1 });
    while (r.code === 'limit' && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 200));
      r = await a.request({ op: 'pub', topic: 'chat/new', data: 1 });
    }
    assert.equal(r.op, 'ok', JSON.stringify(r));
  });
});
