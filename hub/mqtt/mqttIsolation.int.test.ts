import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NatsConnection } from '@nats-io/transport-node';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { connectNats } from '../testing/natsClient.ts';
import { TestClient } from '../testing/wsClient.ts';
import { barrier, connect, mosquittoSub, startMqttHub, until, withoutMarkers, type Collector, type MqttHub } from './mqttTestKit.ts';

/**
 * Org isolation over MQTT. Org A listens with every wide filter while org B (over MQTT, WebSocket
 * and raw NATS) publishes a SECRET marker; A must see only its own positive control.
 */
describe('mqtt isolation', () => {
  let issuer: TestIssuer;
  let h: MqttHub;
  let nc: NatsConnection;
  const open: Collector[] = [];
  const WEIRD = ['a/b', '+', '#', '$SYS/x', '%s%n', 'x/+/#', '$share/g/#'];

  before(async () => {
    issuer = await createTestIssuer();
    h = await startMqttHub(issuer);
    nc = await connectNats();
  });
  after(async () => {
    for (const c of open) c.client.end(true);
    await nc?.close();
    await h?.hub.stop();
  });

  /** Publishes SECRET-B in org B on many topics through every transport. */
  const publishInB = async (orgB: string) => {
    const b = await connect(h.tcpUrl, await issuer.token(orgB, 'b-admin'), { protocolVersion: 5 });
    open.push(b);
    // Awaited (PUBACK), so that every one was handled before the positive control is published.
    await Promise.all(['x', 'x/y', 'devices/d1/telemetry', '$presence/x', `${orgB}/x`].map((t) => b.client.publishAsync(t, `SECRET-B ${t}`, { qos: 1 }).catch(() => {})));
    const ws = await TestClient.connect(h.hub.wsUrl, await issuer.token(orgB, 'b-ws'));
    await ws.request({ op: 'pub', topic: 'x/ws', data: 'SECRET-B ws' });
    ws.ws.close();
    nc.publish(`hub.${orgB}.x.nats`, 'SECRET-B nats');
    await nc.flush();
  };

  for (const protocolVersion of [4, 5] as const) {
    it(`wide filters - #, +/#, $SYS/#, $share/g/# and other orgs' names never see org B (v${protocolVersion})`, async () => {
      const orgA = testOrg('a');
      const orgB = testOrg('b');
      const a = await connect(h.tcpUrl, await issuer.token(orgA, 'a-admin'), { protocolVersion });
      open.push(a);
      const filters = ['#', '+/#', '+', '$SYS/#', '$share/g/#', `${orgB}/#`, `hub/${orgB}/#`, '$presence/#', '+/+/+'];
      const granted = (await a.client.subscribeAsync(filters, { qos: 1 }).catch((e) => ({ granted: e.packet.granted }))) as { granted?: number[] } | { qos: number }[];
      void granted;
      const sub = mosquittoSub(h.mqttPort, await issuer.token(orgA, 'a-cli'), protocolVersion === 5 ? 'mqttv5' : 'mqttv311', ['#', '+/#', `${orgB}/#`]);
      await sub.subscribed;
      await publishInB(orgB);
      // Positive control: A's own message arrives on the same wide filters.
      const own = await connect(h.tcpUrl, await issuer.token(orgA, 'a-pub'));
      open.push(own);
      await own.client.publishAsync('control/a', 'MINE-A', { qos: 1 });
      await a.waitFor(1, (m) => m.payload.toString() === 'MINE-A');
      // Anything leaked was routed before MINE-A (one hub, one NATS connection, in order), so it is
      // in a.got already and reaches mosquitto_sub before MINE-A does.
      assert.ok(await until(() => sub.got.some((m) => m.payload.toString() === 'MINE-A')), 'mosquitto_sub got the positive control');
      sub.kill();
      for (const m of [...a.got, ...sub.got]) {
        assert.ok(!m.payload.toString().includes('SECRET-B'), `org A received ${m.topic}: ${m.payload}`);
        assert.ok(m.payload.toString().includes('MINE-A'), `unexpected ${m.topic}`);
      }
    });
  }

  it('client ids and usernames with / + # $ % are harmless and stay inside their org', async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const clients: Collector[] = [];
    for (const id of WEIRD) {
      for (const org of [orgA, orgB]) {
        const c = await connect(h.tcpUrl, await issuer.token(org, `u-${clients.length}`), { clientId: id, username: id, protocolVersion: clients.length % 2 ? 5 : 4 });
        open.push(c);
        clients.push(c);
        await c.client.subscribeAsync('#');
      }
    }
    const a = clients[0];
    await a.client.publishAsync('hello', 'MINE-A', { qos: 1 });
    for (let i = 0; i < clients.length; i++) {
      const inA = i % 2 === 0;
      if (inA) await clients[i].waitFor(1);
    }
    // Barrier in org B instead of a sleep: its marker is published after A's message was acked, so
    // a leak of A's message would reach org B's clients before the marker.
    const inB = clients.filter((_, i) => i % 2 === 1);
    await inB[0]!.client.publishAsync('zz/marker', 'barrier-b', { qos: 1 });
    for (const c of inB) await c.waitFor(1, (m) => m.payload.toString() === 'barrier-b');
    for (let i = 0; i < clients.length; i++) {
      assert.equal(withoutMarkers(clients[i].got).length, i % 2 === 0 ? 1 : 0, `client ${i} (${WEIRD[Math.floor(i / 2)]})`);
    }
    // Same client id in two orgs: no takeover across orgs; everyone is still connected.
    for (const c of clients) assert.equal(c.client.connected, true);
  });

  it('retained - org A never gets org B retained messages, even through wildcards', async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const b = await connect(h.tcpUrl, await issuer.token(orgB, 'b'));
    open.push(b);
    await b.client.publishAsync('r/x', 'SECRET-B', { qos: 1, retain: true });
    const a = await connect(h.tcpUrl, await issuer.token(orgA, 'a'));
    open.push(a);
    await a.client.publishAsync('r/own', 'MINE-A', { qos: 1, retain: true });
    await a.client.subscribeAsync(['#', 'r/#', '+/+']);
    await a.waitFor(1);
    // Retained messages are sent before the session's next packet is handled: after the barrier, all are in.
    const got = await barrier(a, 'zz/barrier');
    assert.ok(got.length >= 1);
    for (const m of got) assert.equal(m.payload.toString(), 'MINE-A');
  });
});
