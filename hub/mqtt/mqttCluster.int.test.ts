import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { IDisconnectPacket } from 'mqtt-packet';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { connect, startMqttHub, until, type Collector, type MqttHub } from './mqttTestKit.ts';

/** Two hub nodes sharing NATS: MQTT client-id takeover holds across nodes, and only inside an org. */
describe('mqtt across nodes', () => {
  let issuer: TestIssuer;
  let h1: MqttHub;
  let h2: MqttHub;
  const open: Collector[] = [];

  /** Connects with a fixed client id and records how the connection ended. */
  const client = async (h: MqttHub, org: string, sub: string, clientId: string, protocolVersion: 4 | 5) => {
    const c = await connect(h.tcpUrl, await issuer.token(org, sub), { clientId, protocolVersion, clean: true });
    open.push(c);
    const ended = { disconnect: undefined as IDisconnectPacket | undefined, closed: false };
    c.client.on('disconnect', (p: IDisconnectPacket) => (ended.disconnect = p));
    c.client.on('close', () => (ended.closed = true));
    return { c, ended };
  };

  before(async () => {
    issuer = await createTestIssuer();
    [h1, h2] = await Promise.all([startMqttHub(issuer), startMqttHub(issuer)]);
  });
  after(async () => {
    for (const c of open) c.client.end(true);
    await Promise.all([h1?.hub.stop(), h2?.hub.stop()]);
  });

  for (const version of [5, 4] as const) {
    it(`takeover - the same client id on another node closes the older session${version === 5 ? ' with DISCONNECT 0x8E' : ''}; the newer one keeps working (v${version})`, async () => {
      const org = testOrg();
      const first = await client(h1, org, 'dev', 'dev-1', version);
      const second = await client(h2, org, 'dev', 'dev-1', version);
      assert.ok(await until(() => first.ended.closed), 'the session on node 1 was closed');
      if (version === 5) assert.equal(first.ended.disconnect?.reasonCode, 0x8e);
      // and it still works across both nodes
      const watcher = await client(h1, org, 'w', `watch-${version}`, version);
      await watcher.c.client.subscribeAsync('t/#');
      await second.c.client.publishAsync('t/x', 'still here', { qos: 1 });
      const [m] = await watcher.c.waitFor(1);
      assert.equal(m.payload.toString(), 'still here');
      // Barrier from node 1 to node 2 (one NATS connection each, delivered in order): once node 2
      // delivered node 1's marker, it has handled every takeover notice node 1 sent before it.
      await second.c.client.subscribeAsync('u/#');
      await watcher.c.client.publishAsync('u/marker', 'm', { qos: 1 });
      await second.c.waitFor(1, (x) => x.topic === 'u/marker');
      assert.equal(second.ended.closed, false, 'the newer session on node 2 stays');
      assert.equal(second.ended.disconnect, undefined);
      const metrics = await (await fetch(`${h1.hub.url}/metrics`)).text();
      assert.match(metrics, /^orghub_mqtt_sessions [1-9]\d*$/m);
      assert.match(metrics, /^orghub_mqtt_deliveries_total [1-9]\d*$/m);
    });
  }

  it('takeover - the same client id in another org closes nothing, on either node', async () => {
    const orgA = testOrg();
    const orgB = testOrg();
    const a = await client(h1, orgA, 'dev', 'shared-id', 5);
    const b = await client(h2, orgB, 'dev', 'shared-id', 5);
    const b2 = await client(h1, orgB, 'other', 'shared-id-2', 5);
    // a client cannot forge a takeover notice: its topics land under hub.<its org>., never on orghub.ctl.
    const k = createHash('sha256').update(orgA).update('\u0000').update('shared-id').digest('base64url');
    const forged = JSON.stringify({ k, node: 'forger', session: 'zzzz', at: Date.now() + 1e6 });
    for (const t of ['orghub/ctl/mqtt/takeover', 'ctl/mqtt/takeover']) await b2.c.client.publishAsync(t, forged, { qos: 1 });
    // Barrier instead of a sleep: a marker b2 publishes after the forgeries reaches an org B
    // subscriber on each node, so both nodes have handled whatever node 1 sent before it.
    const watchers = [await client(h1, orgB, 'w1', 'w-1', 5), await client(h2, orgB, 'w2', 'w-2', 5)];
    for (const w of watchers) await w.c.client.subscribeAsync('zz/#');
    await b2.c.client.publishAsync('zz/marker', 'm', { qos: 1 });
    for (const w of watchers) await w.c.waitFor(1, (x) => x.topic === 'zz/marker');
    assert.equal(a.ended.closed, false, 'org A keeps its session');
    assert.equal(b.ended.closed, false, 'org B keeps its session');
    assert.equal(b2.ended.closed, false);
    // positive control in org B: the same id again does take over
    await client(h1, orgB, 'dev', 'shared-id', 5);
    assert.ok(await until(() => b.ended.closed), 'org B\'s own newer session took over');
    assert.equal(b.ended.disconnect?.reasonCode, 0x8e);
    assert.equal(a.ended.closed, false, 'org A is still untouched');
  });
});
