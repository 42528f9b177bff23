import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import type { IDisconnectPacket } from 'mqtt-packet';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { connectNats } from '../testing/natsClient.ts';
import { barrierAcross, sleep, TestClient } from '../testing/wsClient.ts';
import { connect as mqttConnect, type MqttHub } from '../mqtt/mqttTestKit.ts';
import { startTwoNodes } from './testNodes.ts';

/** Trust gaps of issue 10 against two real hub processes (WebSocket, MQTT, HTTP) and a raw NATS client. */
describe('trust gaps', () => {
  let issuer: TestIssuer;
  let h1: MqttHub;
  let h2: MqttHub;
  let nc: NatsConnection;
  const ws: TestClient[] = [];
  const mq: { client: { end(force?: boolean): void } }[] = [];

  const client = async (h: MqttHub, org: string, sub: string, roles = ['admin']) => {
    const c = await TestClient.connect(h.hub.wsUrl, await issuer.token(org, sub, roles));
    ws.push(c);
    return c;
  };
  const httpCmd = async (h: MqttHub, token: string, body: unknown) => {
    const r = await fetch(`${h.hub.url}/v1/commands`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as any };
  };

  before(async () => {
    issuer = await createTestIssuer();
    ({ nodes: [h1, h2] } = await startTwoNodes(issuer));
    nc = await connectNats();
  });
  after(async () => {
    await Promise.all(ws.map((c) => c.close()));
    for (const m of mq) m.client.end(true);
    await nc?.close();
    await Promise.all([h1?.hub.stop(), h2?.hub.stop()]);
  });

  it('headers - Orghub-Ts: Infinity (and other absurd values) from a NATS publisher are replaced; the coalesced JSON frame stays valid', async () => {
    const org = testOrg();
    const c = await client(h1, org, 'watcher');
    assert.equal((await c.request({ op: 'sub', topic: 'raw/#' })).op, 'ok');
    const bad = ['Infinity', '-Infinity', 'NaN', '1e400', '99999999999999999999'];
    const before = Date.now();
    // One burst: the hub coalesces these into one frame per turn, so one bad number would spoil them all.
    for (let i = 0; i < bad.length; i++) {
      const h = headers();
      h.set('Orghub-Ts', bad[i]!);
      nc.publish(`hub.${org}.raw.t${i}`, Buffer.from(JSON.stringify({ i })), { headers: h });
    }
    nc.publish(`hub.${org}.raw.ok`, Buffer.from('{"fine":true}'));
    await nc.flush();
    await c.waitFor((f) => f.op === 'msg' && f.topic === 'raw/ok');
    const got = c.messages().filter((m) => m.topic.startsWith('raw/t'));
    assert.equal(got.length, bad.length, 'every message arrived as valid JSON');
    for (const m of got) {
      assert.equal(typeof m.ts, 'number');
      assert.ok(Number.isFinite(m.ts) && m.ts >= before - 1000 && m.ts <= Date.now() + 1000, `ts ${m.ts} replaced by the receive time`);
    }
    assert.equal(c.messages('raw/ok')[0]!.ts, 0, 'no header: 0 as before');
  });

  it('headers - a forged Orghub-From from a NATS publisher is dropped; a hub publish keeps its from across nodes', async () => {
    const org = testOrg();
    const c = await client(h2, org, 'watcher');
    assert.equal((await c.request({ op: 'sub', topic: 'chat/#' })).op, 'ok');
    const h = headers();
    h.set('Orghub-From', 'alice');
    h.set('Orghub-Sig', 'A'.repeat(22));
    nc.publish(`hub.${org}.chat.forged`, Buffer.from('"i am alice"'), { headers: h });
    await nc.flush();
    const forged = await c.waitFor((f) => f.op === 'msg' && f.topic === 'chat/forged');
    assert.equal(forged.from, undefined);
    // positive control: alice's own publish on node 1 reaches node 2 with from = alice
    const alice = await client(h1, org, 'alice');
    assert.equal((await alice.request({ op: 'pub', topic: 'chat/real', data: 'hi' })).op, 'ok');
    const real = await c.waitFor((f) => f.op === 'msg' && f.topic === 'chat/real');
    assert.equal(real.from, 'alice');
  });

  it('idempotency - keys are scoped per actor: the same key from another actor is its own command; a different request under a used key is conflict and leaks nothing', async () => {
    const org = testOrg();
    const key = `k-${randomUUID()}`;
    const alice = await client(h1, org, 'alice');
    const bob = await client(h2, org, 'bob');
    const a1 = await alice.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'alice' }, key });
    assert.equal(a1.op, 'ok', JSON.stringify(a1));
    // bob, same key, same request: a new command, not alice's
    const b1 = await bob.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'alice' }, key });
    assert.equal(b1.op, 'ok');
    assert.equal(b1.duplicate, undefined);
    assert.notEqual(b1.eventId, a1.eventId);
    // bob, same key, different request: his own first command stands, the other is conflict
    const b2 = await bob.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d2/commands', data: {}, key });
    assert.deepEqual([b2.op, b2.code, b2.eventId, b2.position], ['err', 'conflict', undefined, undefined]);
    assert.doesNotMatch(JSON.stringify(b2), new RegExp(a1.eventId));
    const b3 = await httpCmd(h1, await issuer.token(org, 'bob'), { type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'other' }, key });
    assert.equal(b3.status, 409);
    assert.equal(b3.body.error.code, 'conflict');
    assert.doesNotMatch(JSON.stringify(b3.body), new RegExp(`${a1.eventId}|${b1.eventId}`));
    // positive control: alice's true retry still answers her original
    const a2 = await httpCmd(h2, await issuer.token(org, 'alice'), { type: 'device.reboot', topic: 'devices/d1/commands', data: { reason: 'alice' }, key });
    assert.deepEqual([a2.status, a2.body.eventId, a2.body.duplicate], [200, a1.eventId, true]);
  });

  it('jwt - the HTTP API takes the token from the Authorization header only, never from ?access_token=', async () => {
    const org = testOrg();
    const token = await issuer.token(org, 'svc', ['service']);
    const body = JSON.stringify({ topic: 'a/b', data: 1 });
    const q = await fetch(`${h1.hub.url}/v1/publish?access_token=${token}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal(q.status, 401);
    assert.equal(((await q.json()) as any).error.message, 'token_missing');
    // positive control: the header works, and the WebSocket upgrade still takes the query form
    const h = await fetch(`${h1.hub.url}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body });
    assert.equal(h.status, 200);
    const c = await TestClient.connect(h2.hub.wsUrl, token, { via: 'query' });
    ws.push(c);
    assert.equal((await c.request({ op: 'sub', topic: 'a/#' })).op, 'ok');
  });

  it('takeover - another sub of the same org cannot take over a client id (nor fire its Will); the same sub can, across nodes', async () => {
    const org = testOrg();
    const dev = await mqttConnect(h1.tcpUrl, await issuer.token(org, 'dev', ['device']), { protocolVersion: 5, clientId: 'shared-cid', will: { topic: 'devices/dev/status', payload: Buffer.from('gone'), qos: 0, retain: false } });
    mq.push(dev);
    let devEnded: IDisconnectPacket | undefined;
    let devClosed = false;
    dev.client.on('disconnect', (p: IDisconnectPacket) => (devEnded = p));
    dev.client.on('close', () => (devClosed = true));
    const watcher = await client(h1, org, 'watcher');
    assert.equal((await watcher.request({ op: 'sub', topic: 'devices/+/status' })).op, 'ok');
    const mallory = await mqttConnect(h2.tcpUrl, await issuer.token(org, 'mallory', ['device']), { protocolVersion: 5, clientId: 'shared-cid' });
    mq.push(mallory);
    // Barriers instead of a sleep: node 2's marker reaches the watcher on node 1 after node 2's
    // takeover notice reached node 1; a PUBACK to dev comes after any DISCONNECT; node 1's marker
    // comes after any Will node 1 would have published on closing dev.
    const barrierToken = await issuer.token(org, 'barrier', ['admin']);
    await barrierAcross(watcher, [h2.hub.url], barrierToken, 'devices/zz/status');
    await Promise.race([dev.client.publishAsync('devices/dev/x', 'ping', { qos: 1 }).catch(() => {}), sleep(5000)]);
    await barrierAcross(watcher, [h1.hub.url], barrierToken, 'devices/zz/status');
    assert.equal(devEnded?.reasonCode ?? 'none', 'none', 'no DISCONNECT');
    assert.equal(devClosed, false, 'another principal with the same client id takes nothing over');
    assert.equal(watcher.messages('devices/dev/status').length, 0, 'and fires no Will');
    // positive control: dev itself reconnecting on node 2 takes its id over
    const again = await mqttConnect(h2.tcpUrl, await issuer.token(org, 'dev', ['device']), { protocolVersion: 5, clientId: 'shared-cid' });
    mq.push(again);
    const deadline = Date.now() + 5000;
    while (!devClosed && Date.now() < deadline) await sleep(20);
    assert.equal(devClosed, true);
    assert.equal(devEnded?.reasonCode, 0x8e);
  });
});
