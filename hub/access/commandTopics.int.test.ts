import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { headers, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { connectNats } from '../testing/natsClient.ts';
import { sleep, TestClient, type Frame } from '../testing/wsClient.ts';
import { connect as mqttConnect, type Collector, type MqttHub } from '../mqtt/mqttTestKit.ts';
import { startTwoNodes } from './testNodes.ts';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const TOPIC = 'devices/d1/commands';

/**
 * Command topics are reserved (issue 10 "Trust gaps", DESIGN.md "Commands are only published by
 * the hub"): two real hub processes, real WebSocket, HTTP and MQTT (3.1.1 and 5) clients, and a raw
 * NATS client. Every forgery on `devices/d1/commands` is refused (or dropped) and reaches no
 * subscriber of that topic, while a real `cmd` there is recorded and reaches them all.
 */
describe('command topics', () => {
  let issuer: TestIssuer;
  let h1: MqttHub;
  let h2: MqttHub;
  let nc: NatsConnection;
  let pool: pg.Pool;
  const ws: TestClient[] = [];
  const mq: Collector[] = [];

  const client = async (h: MqttHub, org: string, sub: string, roles = ['admin'], claims: Record<string, unknown> = {}) => {
    const c = await TestClient.connect(h.hub.wsUrl, await issuer.token(org, sub, roles, claims));
    ws.push(c);
    return c;
  };
  const mqtt = async (h: MqttHub, org: string, sub: string, protocolVersion: 4 | 5, roles = ['device']) => {
    const c = await mqttConnect(h.tcpUrl, await issuer.token(org, sub, roles), { protocolVersion, clientId: `${sub}-${protocolVersion}-${randomUUID().slice(0, 8)}` });
    mq.push(c);
    return c;
  };
  const post = async (h: MqttHub, path: string, token: string, body: unknown) => {
    const r = await fetch(`${h.hub.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as any };
  };
  /** Events of `org` as the BYPASSRLS projector role (explicit org filter). */
  const events = async (org: string, where = 'true', params: unknown[] = []) => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      return (await c.query(`SELECT stream_id, type, data, event_id::text FROM events WHERE org_id = $1 AND (${where}) ORDER BY global_position`, [org, ...params])).rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  };
  const waitAudit = async (org: string, pred: (d: any) => boolean, what: string) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const hit = (await events(org, `stream_id = 'audit' AND type = 'audit.publish.denied'`)).find((r) => pred(r.data));
      if (hit) return hit.data;
      if (Date.now() > deadline) throw new Error(`no publish.denied audit for ${what}`);
      await sleep(100);
    }
  };
  const forgedCount = async (h: MqttHub) => {
    const m = /^orghub_bus_forged_commands_dropped_total (\d+)$/m.exec(await (await fetch(`${h.hub.url}/metrics`)).text());
    assert.ok(m, 'orghub_bus_forged_commands_dropped_total is exposed');
    return Number(m[1]);
  };
  /** What a recorded command looks like on its topic; a forgery copies it exactly. */
  const forgedPayload = (tag: string) => ({ commandId: `forged-${tag}`, type: 'device.reboot', data: { reason: 'forged' }, issuedBy: 'alice', position: '1' });
  const wsCommands = (c: TestClient) => c.messages().filter((m: Frame) => m.topic === TOPIC).map((m: Frame) => m.data?.commandId);
  const mqttCommands = (c: Collector) => c.got.filter((m) => m.topic === TOPIC).map((m) => JSON.parse(m.payload.toString()).commandId);

  before(async () => {
    issuer = await createTestIssuer();
    ({ nodes: [h1, h2] } = await startTwoNodes(issuer));
    nc = await connectNats();
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await Promise.all(ws.map((c) => c.close()));
    for (const m of mq) m.client.end(true);
    await nc?.close();
    await pool?.end();
    await Promise.all([h1?.hub.stop(), h2?.hub.stop()]);
  });

  it('reserved - forged command payloads over WebSocket, HTTP (single and batch) and MQTT 3.1.1 and 5 are forbidden and reach no subscriber; a real cmd there is recorded and reaches them all', async () => {
    const org = testOrg();
    // Subscribers of the command topic: the device itself on node 1 (WebSocket) and on node 2 (MQTT 5 and 3.1.1)
    const devWs = await client(h1, org, 'd1', ['device']);
    assert.equal((await devWs.request({ op: 'sub', topic: TOPIC })).op, 'ok', 'subscribing to a command topic stays allowed');
    const devM5 = await mqtt(h2, org, 'd1', 5);
    const devM4 = await mqtt(h2, org, 'd1', 4);
    for (const m of [devM5, devM4]) assert.deepEqual((await m.client.subscribeAsync(TOPIC, { qos: 1 })).map((g) => g.qos), [1]);
    assert.deepEqual((await devM5.client.subscribeAsync('devices/d1/telemetry', { qos: 1 })).map((g) => g.qos), [1]);

    // WebSocket: the admin (pub on `#`), the device (pub on devices/d1/#) and an explicit acl grant
    const admin = await client(h1, org, 'alice');
    const granted = await client(h2, org, 'svc', [], { acl: { pub: [TOPIC], sub: [] } });
    const forger = await client(h2, org, 'd1', ['device']);
    for (const [i, c] of [admin, granted, forger].entries()) {
      const r = await c.request({ op: 'pub', topic: TOPIC, data: forgedPayload(`ws${i}`) });
      assert.deepEqual([r.op, r.code], ['err', 'forbidden'], JSON.stringify(r));
      assert.match(r.message, /reserved/);
    }
    // Positive control of the grants: the same principals may still publish next door
    assert.equal((await forger.request({ op: 'pub', topic: 'devices/d1/telemetry', data: 1 })).op, 'ok');

    // HTTP, single and batch (the batch is refused whole, the item named by its index)
    const adminToken = await issuer.token(org, 'alice', ['admin']);
    const single = await post(h1, '/v1/publish', adminToken, { topic: TOPIC, data: forgedPayload('http') });
    assert.deepEqual([single.status, single.body.error.code], [403, 'forbidden']);
    const batch = await post(h2, '/v1/publish/batch', adminToken, [{ topic: 'devices/d1/telemetry', data: 'batch-mate' }, { topic: TOPIC, data: forgedPayload('batch') }]);
    assert.deepEqual([batch.status, batch.body.error.code], [403, 'forbidden']);
    assert.match(batch.body.error.message, /^\[1\] /);

    // MQTT 5: PUBACK 0x87; MQTT 3.1.1: a plain PUBACK and nothing published; QoS 0 dropped
    const m5 = await mqtt(h1, org, 'd1', 5);
    const m4 = await mqtt(h2, org, 'd1', 4);
    const code5 = await m5.client.publishAsync(TOPIC, JSON.stringify(forgedPayload('mqtt5')), { qos: 1 }).then(() => 0, (e: { code?: number }) => e.code);
    assert.equal(code5, 0x87, 'MQTT 5 PUBACK Not authorized');
    await m4.client.publishAsync(TOPIC, JSON.stringify(forgedPayload('mqtt4')), { qos: 1 });
    await m5.client.publishAsync(TOPIC, JSON.stringify(forgedPayload('mqtt5-q0')), { qos: 0 });
    await m4.client.publishAsync(TOPIC, JSON.stringify(forgedPayload('mqtt4-q0')), { qos: 0 });
    // A retained forgery would outlive the publish: refused the same way
    const retained = await m5.client.publishAsync(TOPIC, JSON.stringify(forgedPayload('retained')), { qos: 1, retain: true }).then(() => 0, (e: { code?: number }) => e.code);
    assert.equal(retained, 0x87);
    // A Will there is refused at CONNECT (3.1.1: return code 5; 5: 0x87)
    for (const protocolVersion of [4, 5] as const) {
      const refused = await mqttConnect(h1.tcpUrl, await issuer.token(org, 'd1', ['device']), { protocolVersion, clientId: `will-${protocolVersion}`, will: { topic: TOPIC, payload: Buffer.from(JSON.stringify(forgedPayload('will'))), qos: 1, retain: false } }).then(
        (c) => (mq.push(c), 0),
        (e: { code?: number }) => e.code,
      );
      assert.equal(refused, protocolVersion === 5 ? 0x87 : 5, `MQTT ${protocolVersion} Will on a command topic`);
    }

    // Positive control: a real cmd through each node after all of that. Each hub publishes over one
    // NATS connection in order, so a forgery that had been published would have arrived first.
    const real1 = await admin.request({ op: 'cmd', type: 'device.reboot', topic: TOPIC, data: { reason: 'real-1' }, key: `k1-${org}` });
    assert.equal(real1.op, 'ok', JSON.stringify(real1));
    const real2 = await post(h2, '/v1/commands', adminToken, { type: 'device.reboot', topic: TOPIC, data: { reason: 'real-2' }, key: `k2-${org}` });
    assert.equal(real2.status, 200, JSON.stringify(real2.body));
    const both = [real1.eventId, real2.body.eventId];
    await Promise.all(both.map((id) => devWs.waitFor((f) => f.op === 'msg' && f.data?.commandId === id)));
    for (const m of [devM5, devM4]) await m.waitFor(2, (x) => x.topic === TOPIC);
    // Then: exactly the two recorded commands, in every subscriber, and the batch-mate was not published
    assert.deepEqual(wsCommands(devWs).sort(), [...both].sort());
    for (const m of [devM5, devM4]) assert.deepEqual(mqttCommands(m).sort(), [...both].sort());
    // (the forger's own telemetry went through on node 2 before the batch, whose mate did not)
    assert.deepEqual(devM5.got.filter((m) => m.topic === 'devices/d1/telemetry').map((m) => m.payload.toString()), ['1']);
    const msg = devWs.messages(TOPIC).find((m: Frame) => m.data.commandId === real1.eventId)!;
    assert.deepEqual(msg.data, { commandId: real1.eventId, type: 'device.reboot', data: { reason: 'real-1' }, issuedBy: 'alice', position: real1.position });
    assert.equal(msg.from, 'alice');
    const recorded = await events(org, `stream_id = $2`, [`commands:${TOPIC}`]);
    assert.deepEqual(recorded.map((r) => r.event_id).sort(), [...both].sort(), 'the two commands, and nothing forged, were recorded');

    // Every refusal is audited as publish.denied with reason: reserved, per transport
    // (the first of each transport is recorded at once; repeats, the Wills included, are aggregated)
    for (const transport of ['ws', 'http', 'mqtt']) {
      const d = await waitAudit(org, (x) => x.transport === transport && x.topic === TOPIC && x.reason === 'reserved', transport);
      assert.equal(d.topic, TOPIC);
    }
  });

  it('nats - a raw NATS publish on a command subject reaches nobody (unsigned, mis-signed, or a genuine command\'s headers on other bytes) and is counted; a raw publish on another topic is delivered', async () => {
    const org = testOrg();
    const subject = `hub.${org}.devices.d1.commands`;
    const devWs = await client(h1, org, 'd1', ['device']);
    assert.equal((await devWs.request({ op: 'sub', topic: 'devices/d1/#' })).op, 'ok');
    const devM5 = await mqtt(h2, org, 'd1', 5);
    assert.deepEqual((await devM5.client.subscribeAsync('devices/d1/#', { qos: 1 })).map((g) => g.qos), [1]);
    // A backend watching the subject captures one genuine command with its headers
    let genuine: { data: Uint8Array; headers?: MsgHdrs } | undefined;
    const watch = nc.subscribe(subject, { callback: (_e, m) => {
        genuine ??= { data: m.data, headers: m.headers };
      } });
    await nc.flush();
    const admin = await client(h2, org, 'alice');
    const real = await admin.request({ op: 'cmd', type: 'device.reboot', topic: TOPIC, data: { reason: 'real' }, key: `k-${org}` });
    assert.equal(real.op, 'ok', JSON.stringify(real));
    await devWs.waitFor((f) => f.op === 'msg' && f.data?.commandId === real.eventId);
    await devM5.waitFor(1, (m) => m.topic === TOPIC);
    const deadline = Date.now() + 5000;
    while (!genuine && Date.now() < deadline) await sleep(20);
    watch.unsubscribe();
    assert.ok(genuine?.headers?.get('Orghub-Cmd-Sig'), 'a command is published with its payload signature');
    const before = [await forgedCount(h1), await forgedCount(h2)];

    // When a raw publisher sends command-shaped payloads: bare, with made-up signatures, and with
    // the genuine command's headers (From, Ts, Sig, Cmd-Sig) on forged bytes
    nc.publish(subject, JSON.stringify(forgedPayload('bare')));
    const junk = headers();
    junk.set('Orghub-From', 'alice');
    junk.set('Orghub-Ts', String(Date.now()));
    junk.set('Orghub-Sig', 'A'.repeat(22));
    junk.set('Orghub-Cmd-Sig', 'A'.repeat(43));
    nc.publish(subject, JSON.stringify(forgedPayload('junk')), { headers: junk });
    nc.publish(subject, JSON.stringify(forgedPayload('replayed-headers')), { headers: genuine!.headers });
    // Positive control, same connection and after them: a raw publish on a non-command topic
    nc.publish(`hub.${org}.devices.d1.telemetry`, JSON.stringify({ raw: true }));
    await nc.flush();

    // Then the control arrives at both nodes' subscribers, and none of the forgeries did
    const control = await devWs.waitFor((f) => f.op === 'msg' && f.topic === 'devices/d1/telemetry');
    assert.deepEqual(control.data, { raw: true });
    assert.equal(control.from, undefined);
    await devM5.waitFor(1, (m) => m.topic === 'devices/d1/telemetry');
    assert.deepEqual(wsCommands(devWs), [real.eventId]);
    assert.deepEqual(mqttCommands(devM5), [real.eventId]);
    // Each node dropped and counted the three (one NATS subscription per org and node)
    const afterCounts = [await forgedCount(h1), await forgedCount(h2)];
    assert.deepEqual(afterCounts.map((n, i) => n - before[i]!), [3, 3]);
  });

  it('cmd - a command on a topic outside its type\'s declared topics is bad_topic over WebSocket, HTTP and MQTT, and nothing is recorded', async () => {
    const org = testOrg();
    const admin = await client(h1, org, 'alice');
    const outside = ['devices/d1/config', 'fleet/all', 'devices/d1/x/commands', 'devices/commands'];
    for (const [i, topic] of outside.entries()) {
      const r = await admin.request({ op: 'cmd', type: 'device.reboot', topic, data: {}, key: `out-${i}` });
      assert.deepEqual([r.op, r.code], ['err', 'bad_topic'], `${topic}: ${JSON.stringify(r)}`);
      assert.equal(r.message, `device.reboot is delivered on "devices/+/commands"; "${topic}" matches none`);
    }
    const http = await post(h2, '/v1/commands', await issuer.token(org, 'alice', ['admin']), { type: 'device.config', topic: 'devices/d1/config', data: { settings: {} }, key: 'out-http' });
    assert.deepEqual([http.status, http.body.error.code], [400, 'bad_topic']);
    const m5 = await mqtt(h2, org, 'alice', 5, ['admin']);
    const code = await m5.client.publishAsync('$cmd/devices/d1/config', JSON.stringify({ type: 'device.reboot', data: {}, key: 'out-mqtt' }), { qos: 1 }).then(() => 0, (e: { code?: number }) => e.code);
    assert.equal(code, 0x90, 'MQTT 5 PUBACK Topic Name invalid');
    // Positive control: the same commands on the declared topic are recorded (WS, HTTP, MQTT)
    assert.equal((await admin.request({ op: 'cmd', type: 'device.reboot', topic: TOPIC, data: {}, key: 'in-ws' })).op, 'ok');
    assert.equal((await post(h2, '/v1/commands', await issuer.token(org, 'alice', ['admin']), { type: 'device.config', topic: TOPIC, data: { settings: {} }, key: 'in-http' })).status, 200);
    assert.equal(await m5.client.publishAsync(`$cmd/${TOPIC}`, JSON.stringify({ type: 'device.reboot', data: {}, key: 'in-mqtt' }), { qos: 1 }).then(() => 0, (e: { code?: number }) => e.code), 0);
    const recorded = await events(org, `stream_id LIKE 'commands:%'`);
    assert.deepEqual(recorded.map((r) => r.stream_id), [`commands:${TOPIC}`, `commands:${TOPIC}`, `commands:${TOPIC}`]);
  });
});
