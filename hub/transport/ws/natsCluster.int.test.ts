import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestIssuer, type TestIssuer } from '../../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../../testing/hubProcess.ts';
import { natsServer, type NatsServer } from '../../testing/natsClient.ts';
import { sleep, TestClient } from '../../testing/wsClient.ts';

// A private NATS is a cluster of its own: its hubs keep presence under their own prefix, or they
// would reap other suites' dead nodes and announce the leaves where nobody listens (docs/presence.md).
const PRIVATE_PRESENCE = `test:presence:${randomUUID()}:`;

/**
 * Scale-out in miniature: a three-node NATS cluster on loopback and two hubs, each connected to a
 * different NATS node first. Messages must cross the cluster, and a hub whose NATS node dies must
 * fail over to another node by itself, with its subscriptions intact.
 */
describe('nats cluster', () => {
  let issuer: TestIssuer;
  const nodes: NatsServer[] = [];
  let hub1: HubProcess;
  let hub2: HubProcess;

  before(async () => {
    issuer = await createTestIssuer();
    const clientPorts = [await freePort(), await freePort(), await freePort()];
    const routePorts = [await freePort(), await freePort(), await freePort()];
    const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
    for (let i = 0; i < 3; i++) {
      const n = await natsServer(clientPorts[i], ['--cluster_name', 'orghub-test', '--cluster', `nats://127.0.0.1:${routePorts[i]}`, '--routes', routes]);
      await n.start();
      nodes.push(n);
    }
    // Each hub is given ONE node: it must learn the others from the cluster (INFO connect_urls) to fail over.
    const url = (i: number) => nodes[i].url;
    // ORGHUB_EVENT_STORE=none: this suite is about the bus; no Postgres in the way.
    [hub1, hub2] = await Promise.all([
      startHubProcess({ ...issuer.env, NATS_URL: url(0), ORGHUB_EVENT_STORE: 'none', ORGHUB_PRESENCE_PREFIX: PRIVATE_PRESENCE }, { timeoutMs: 45_000 }),
      startHubProcess({ ...issuer.env, NATS_URL: url(2), ORGHUB_EVENT_STORE: 'none', ORGHUB_PRESENCE_PREFIX: PRIVATE_PRESENCE }, { timeoutMs: 45_000 }),
    ]);
  });

  after(async () => {
    await Promise.all([hub1?.stop(), hub2?.stop()]);
    for (const n of nodes) await n.kill();
  });

  /** Publishes from `pub` until `sub` sees one message on `topic`: route interest propagates asynchronously. */
  async function deliveredAcross(pub: TestClient, sub: TestClient, topic: string, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; Date.now() < deadline; i++) {
      const r = await pub.request({ op: 'pub', topic, data: { i } });
      if (r.op === 'ok' && sub.messages(topic).length > 0) return true;
      await sleep(100);
      if (sub.messages(topic).length > 0) return true;
    }
    return false;
  }

  it('nats cluster - a message published on one hub reaches a subscriber on the other through the cluster', async () => {
    // Given two hubs on different NATS nodes, a subscriber on hub 2
    const org = testOrg();
    const sub = await TestClient.connect(hub2.wsUrl, await issuer.token(org, 'sub'));
    const pub = await TestClient.connect(hub1.wsUrl, await issuer.token(org, 'pub'));
    assert.equal((await sub.request({ op: 'sub', topic: 'room/+' })).op, 'ok');
    // When hub 1 publishes, Then the message crosses the NATS routes
    assert.ok(await deliveredAcross(pub, sub, 'room/1'), 'message never crossed the cluster');
    // And another org on the same cluster sees nothing of it
    const other = await TestClient.connect(hub2.wsUrl, await issuer.token(testOrg(), 'spy'));
    assert.equal((await other.request({ op: 'sub', topic: '#' })).op, 'ok');
    await pub.request({ op: 'pub', topic: 'room/2', data: 'secret' });
    await sub.waitFor((f) => f.op === 'msg' && f.topic === 'room/2');
    await sleep(200);
    assert.equal(other.messages().length, 0);
    await Promise.all([sub.close(), pub.close(), other.close()]);
  });

  it('nats cluster - when its NATS node dies a hub fails over to a discovered node and keeps its subscriptions', async () => {
    // Given a subscriber on hub 1, which was configured with node 0 only
    const org = testOrg();
    const sub = await TestClient.connect(hub1.wsUrl, await issuer.token(org, 'sub'));
    const pub = await TestClient.connect(hub2.wsUrl, await issuer.token(org, 'pub'));
    assert.equal((await sub.request({ op: 'sub', topic: 'fail/over' })).op, 'ok');
    assert.ok(await deliveredAcross(pub, sub, 'fail/over'));
    // When node 0 is killed
    await nodes[0].kill();
    // Then hub 1 reconnects to a surviving node by itself and deliveries resume to the old subscription
    const before = sub.messages('fail/over').length;
    const deadline = Date.now() + 15_000;
    let resumed = false;
    while (!resumed && Date.now() < deadline) {
      await pub.request({ op: 'pub', topic: 'fail/over', data: 'after' });
      await sleep(200);
      resumed = sub.messages('fail/over').length > before;
    }
    assert.ok(resumed, 'no delivery after failover');
    const ready = await fetch(`${hub1.url}/ready`);
    assert.equal(ready.status, 200);
    await nodes[0].start();
    await Promise.all([sub.close(), pub.close()]);
  });
});
