import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Redis } from 'ioredis';
import type { NatsConnection } from '@nats-io/transport-node';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg } from '../testing/hubProcess.ts';
import { TestClient } from '../testing/wsClient.ts';
import { collect, connectNats } from '../testing/natsClient.ts';
import { barrier, connect, mosquittoPub, mosquittoSub, refusedCode, startMqttHub, type Collector, type MqttHub } from './mqttTestKit.ts';
import { retainedKey } from './retainedRedis.ts';

/** The bridge against a real hub process, real NATS and Redis, with clients nobody here wrote. */
describe('mqtt bridge', () => {
  let issuer: TestIssuer;
  let h: MqttHub;
  let nc: NatsConnection;
  let redis: Redis;
  const open: Collector[] = [];
  const client = async (org: string, sub: string, opts: Parameters<typeof connect>[2] & { roles?: string[]; ws?: boolean } = {}) => {
    const { roles, ws, ...rest } = opts;
    const c = await connect(ws ? h.wsUrl : h.tcpUrl, await issuer.token(org, sub, roles ?? ['admin']), rest);
    open.push(c);
    return c;
  };

  before(async () => {
    issuer = await createTestIssuer();
    h = await startMqttHub(issuer);
    nc = await connectNats();
    redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
  });
  after(async () => {
    for (const c of open) c.client.end(true);
    await nc?.close();
    redis?.disconnect();
    await h?.hub.stop();
  });

  for (const version of ['mqttv311', 'mqttv5'] as const) {
    it(`pub/sub - mosquitto_pub reaches mosquitto_sub (${version})`, async () => {
      const org = testOrg();
      const tok = await issuer.token(org, 'u1');
      const sub = mosquittoSub(h.mqttPort, tok, version, ['sensors/+/temp']);
      try {
        await sub.subscribed;
        const r = await mosquittoPub(h.mqttPort, tok, version, 'sensors/s1/temp', '21.5', ['-q', '1']);
        assert.equal(r.code, 0, r.stderr);
        const [m] = await sub.waitFor(1);
        assert.equal(m.topic, 'sensors/s1/temp');
        assert.equal(m.payload.toString(), '21.5');
      } finally {
        sub.kill();
      }
    });
  }

  for (const protocolVersion of [4, 5] as const) {
    it(`qos 1 - MQTT.js publish is acknowledged and delivered at QoS 1 (v${protocolVersion})`, async () => {
      const org = testOrg();
      const s = await client(org, 's', { protocolVersion });
      const granted = await s.client.subscribeAsync('q/#', { qos: 2 });
      assert.equal(granted[0].qos, 1, 'QoS 2 is downgraded to 1 in SUBACK');
      const p = await client(org, 'p', { protocolVersion });
      const ack = await p.client.publishAsync('q/1', 'one', { qos: 1 });
      if (protocolVersion === 5) assert.equal((ack as { reasonCode?: number } | undefined)?.reasonCode ?? 0, 0);
      await p.client.publishAsync('q/2', 'two', { qos: 2 });
      // delivered at the minimum of the publish and the subscription QoS: a QoS 0 publish stays QoS 0
      await p.client.publishAsync('q/3', 'three', { qos: 0 });
      const got = await s.waitFor(3);
      assert.deepEqual(got.map((m) => [m.topic, m.payload.toString(), m.qos]), [['q/1', 'one', 1], ['q/2', 'two', 1], ['q/3', 'three', 0]]);
    });
  }

  it('wildcards - + matches one segment, # one or more below (a/# does not match a)', async () => {
    const org = testOrg();
    const s = await client(org, 's');
    await s.client.subscribeAsync(['w/+/x', 'w/a/#']);
    const p = await client(org, 'p');
    for (const t of ['w/a', 'w/b/x', 'w/b/y', 'w/a/b/c', 'w/b/x/y']) await p.client.publishAsync(t, t, { qos: 1 });
    await p.client.publishAsync('w/end', 'end', { qos: 1 });
    await s.client.subscribeAsync('w/end');
    await p.client.publishAsync('w/end', 'end', { qos: 1 });
    await s.waitFor(1, (m) => m.topic === 'w/end');
    assert.deepEqual(s.got.filter((m) => m.topic !== 'w/end').map((m) => m.topic).sort(), ['w/a/b/c', 'w/b/x']);
  });

  it('retained - stored in Redis per org, served on subscribe with RETAIN 1, empty payload deletes', async () => {
    const org = testOrg();
    const tok = await issuer.token(org, 'u1');
    const bin = Buffer.from([0, 1, 2, 255, 254, 10, 13]);
    assert.equal((await mosquittoPub(h.mqttPort, tok, 'mqttv311', 'state/a', bin, ['-r', '-q', '1'])).code, 0);
    const p = await client(org, 'p', { protocolVersion: 5 });
    await p.client.publishAsync('state/b', '{"on":true}', { qos: 1, retain: true });
    assert.equal(await redis.hlen(retainedKey(org)), 2, 'both retained messages are in Redis');

    const sub = mosquittoSub(h.mqttPort, tok, 'mqttv5', ['state/#']);
    try {
      const got = await sub.waitFor(2);
      const byTopic = Object.fromEntries(got.map((m) => [m.topic, m]));
      assert.deepEqual(byTopic['state/a'].payload, bin);
      assert.equal(byTopic['state/a'].retain, true);
      assert.equal(byTopic['state/b'].payload.toString(), '{"on":true}');
    } finally {
      sub.kill();
    }
    await p.client.publishAsync('state/a', '', { qos: 1, retain: true });
    assert.equal(await redis.hexists(retainedKey(org), 'state/a'), 0, 'empty retained payload deletes');
    const late = await client(org, 'late');
    await late.client.subscribeAsync('state/#');
    await late.waitFor(1);
    assert.deepEqual((await barrier(late, 'state/zz-barrier')).map((m) => m.topic), ['state/b']);
    // Another org sees none of it (its own marker, published after the subscription, does arrive).
    const other = await client(testOrg(), 'x');
    await other.client.subscribeAsync('#');
    assert.deepEqual(await barrier(other, 'zz/barrier'), []);
  });

  it('last will - published on an ungraceful disconnect, not after DISCONNECT', async () => {
    const org = testOrg();
    const watcher = await client(org, 'w');
    await watcher.client.subscribeAsync('status/#');
    const dying = await client(org, 'd1', { will: { topic: 'status/d1', payload: Buffer.from('gone'), qos: 1, retain: false } });
    const polite = await client(org, 'd2', { protocolVersion: 5, will: { topic: 'status/d2', payload: Buffer.from('gone'), qos: 0, retain: false } });
    await polite.client.endAsync();
    dying.client.stream.destroy();
    const [m] = await watcher.waitFor(1);
    assert.equal(m.topic, 'status/d1');
    assert.equal(m.payload.toString(), 'gone');
    assert.equal((await barrier(watcher, 'status/zz-barrier')).length, 1, 'no will after a clean DISCONNECT');
  });

  it('last will - a will topic outside the grants is refused at CONNECT', async () => {
    const org = testOrg();
    const tok = await issuer.token(org, 'dev1', ['device']);
    const sub = mosquittoSub(h.mqttPort, tok, 'mqttv5', ['devices/dev1/x'], ['--will-topic', 'devices/other/status', '--will-payload', 'x']);
    const r = await sub.exited;
    assert.notEqual(r.code, 0);
    assert.match(r.stderr + r.stdout, /not authori[sz]ed/i);
  });

  it('last will - a will on a $cmd/ topic is refused at CONNECT even when granted (it would not run as a command)', async () => {
    const org = testOrg();
    const tok = await issuer.token(org, 'ops', ['admin'], { acl: { pub: ['$cmd/#'] } });
    const sub = mosquittoSub(h.mqttPort, tok, 'mqttv5', ['devices/x'], ['-W', '5', '--will-topic', '$cmd/devices/d1/commands', '--will-payload', '{"type":"device.reboot","data":{}}']);
    const r = await sub.exited;
    assert.notEqual(r.code, 0);
    assert.match(r.stderr + r.stdout, /topic name invalid|not authori[sz]ed/i);
  });

  it('auth - bad, expired and alg-none tokens are refused at CONNACK (rc 5 / 0x87)', async () => {
    const org = testOrg();
    const expired = await issuer.sign({ sub: 'u', org, roles: ['admin'] }, { ttlSeconds: -60 });
    const b64u = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64u({ alg: 'none', typ: 'JWT' })}.${b64u({ sub: 'u', org, roles: ['admin'], iss: 'orghub-test', aud: 'orghub-test', exp: Math.floor(Date.now() / 1000) + 600 })}.`;
    for (const tok of ['garbage', expired, none]) {
      assert.equal(await refusedCode(h.tcpUrl, tok, 4), 5);
      assert.equal(await refusedCode(h.tcpUrl, tok, 5), 0x87);
      const r = await mosquittoPub(h.mqttPort, tok, 'mqttv311', 't/x', 'x');
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /not authori[sz]ed/i);
    }
    assert.equal(await refusedCode(h.tcpUrl, '', 5), 0x86, 'no password: bad user name or password');
  });

  it('auth - a token expiring while connected ends the session (MQTT 5 DISCONNECT 0xA0)', async () => {
    const org = testOrg();
    const tok = await issuer.sign({ sub: 'u', org, roles: ['admin'] }, { ttlSeconds: 2 });
    const c = await connect(h.tcpUrl, tok, { protocolVersion: 5 });
    open.push(c);
    const reason = await new Promise<number | undefined>((resolve) => {
      c.client.on('disconnect', (p) => resolve(p.reasonCode));
      setTimeout(() => resolve(-1), 6000);
    });
    assert.equal(reason, 0xa0);
  });

  it('acl - a denied filter fails alone (0x80 / 0x87); a denied publish is dropped (PUBACK 0x87 in 5)', async () => {
    const org = testOrg();
    const dev4 = await client(org, 'dev1', { roles: ['device'] });
    const g4 = await dev4.client.subscribeAsync(['devices/dev1/#', 'devices/dev2/#', '#'], { qos: 1 }).catch((e) => e.packet.granted);
    assert.deepEqual(g4, [1, 0x80, 0x80]);
    const dev5 = await client(org, 'dev1', { roles: ['device'], protocolVersion: 5, clientId: 'dev1-v5' });
    const g5 = await dev5.client.subscribeAsync(['devices/dev1/#', 'devices/dev2/#'], { qos: 0 }).catch((e) => e.packet.granted);
    assert.deepEqual(g5, [0, 0x87]);
    const watcher = await client(org, 'admin');
    await watcher.client.subscribeAsync('devices/#');
    const denied = await dev5.client.publishAsync('devices/dev2/cmd', 'x', { qos: 1 }).then((p) => (p as { reasonCode?: number } | undefined)?.reasonCode, (e) => e.code);
    assert.equal(denied, 0x87);
    await dev4.client.publishAsync('devices/dev2/cmd', 'y', { qos: 1 });
    await dev5.client.publishAsync('devices/dev1/ok', 'fine', { qos: 1 });
    await watcher.waitFor(1);
    assert.deepEqual((await barrier(watcher, 'devices/zz-barrier')).map((m) => m.topic), ['devices/dev1/ok']);
  });

  it('shared subscriptions - $share/... is refused (0x9E in 5, 0x80 in 3.1.1)', async () => {
    const org = testOrg();
    const c5 = await client(org, 'a', { protocolVersion: 5 });
    assert.deepEqual(await c5.client.subscribeAsync(['$share/g/x/#', 'x/#']).catch((e) => e.packet.granted), [0x9e, 0]);
    const c4 = await client(org, 'b');
    assert.deepEqual(await c4.client.subscribeAsync(['$share/g/x/#']).catch((e) => e.packet.granted), [0x80]);
  });

  it('topics - a filter outside the grammar fails (0x8F); a PUBLISH outside it disconnects (0x90)', async () => {
    const org = testOrg();
    const c = await client(org, 'a', { protocolVersion: 5 });
    assert.deepEqual(await c.client.subscribeAsync(['a b/c', 'ok/+']).catch((e) => e.packet.granted), [0x8f, 0]);
    const reason = new Promise<number | undefined>((resolve) => c.client.on('disconnect', (p) => resolve(p.reasonCode)));
    c.client.publish('dots.are/not/ok', 'x');
    assert.equal(await reason, 0x90);
  });

  it('commands - $cmd/<topic> without an event store is answered (not left hanging)', async () => {
    const org = testOrg();
    const c = await client(org, 'a', { protocolVersion: 5 });
    const code = await c.client
      .publishAsync('$cmd/devices/d1/commands', JSON.stringify({ type: 'device.reboot', data: { reason: 'test' } }), { qos: 1 })
      .then((p) => (p as { reasonCode?: number } | undefined)?.reasonCode ?? 0, (e) => e.code);
    // 0 when the event store recorded it; 0x83 when this hub runs without one.
    assert.ok(code === 0 || code === 0x83, `reason ${code}`);
    const bad = await c.client.publishAsync('$cmd/devices/d1/commands', 'not json', { qos: 1 }).then((p) => (p as { reasonCode?: number } | undefined)?.reasonCode, (e) => e.code);
    assert.equal(bad, 0x99);
  });

  it('interop - MQTT → WebSocket and WebSocket → MQTT carry identical bytes (JSON and binary)', async () => {
    const org = testOrg();
    const tok = await issuer.token(org, 'w');
    const ws = await TestClient.connect(h.hub.wsUrl, tok);
    const raw: string[] = [];
    ws.ws.on('message', (d: Buffer) => raw.push(d.toString()));
    assert.equal((await ws.request({ op: 'sub', topic: 'x/#' })).op, 'ok');
    const m = await client(org, 'm', { protocolVersion: 5 });
    await m.client.subscribeAsync('y/#', { qos: 1 });
    const json = '{"a": 1,  "b":[true,null],"c":"é"}';
    const bin = Buffer.from([0xff, 0x00, 0x7b, 0x80, 0xc3, 0x28]);
    await m.client.publishAsync('x/json', json, { qos: 1 });
    await m.client.publishAsync('x/bin', bin, { qos: 1 });
    const fj = await ws.waitFor((f) => f.op === 'msg' && f.topic === 'x/json');
    const fb = await ws.waitFor((f) => f.op === 'msg' && f.topic === 'x/bin');
    assert.ok(raw.some((t) => t.includes(json)), 'JSON text embedded verbatim in the WebSocket frame');
    assert.deepEqual(fj.data, JSON.parse(json));
    assert.equal(fb.enc, 'base64');
    assert.deepEqual(Buffer.from(fb.data, 'base64'), bin);

    const data = { n: 1, s: 'x/y' };
    assert.equal((await ws.request({ op: 'pub', topic: 'y/json', data })).op, 'ok');
    const wsPack = await TestClient.connect(h.hub.wsUrl, tok, { enc: 'msgpack' });
    assert.equal((await wsPack.request({ op: 'pub', topic: 'y/bin', data: new Uint8Array(bin) })).op, 'ok');
    const got = await m.waitFor(2);
    assert.deepEqual(got[0].payload, Buffer.from(JSON.stringify(data)));
    assert.deepEqual(got[1].payload, bin);
    assert.deepEqual(got.map((g) => g.qos), [1, 1], 'WebSocket publishes carry no QoS 0 mark: the granted QoS 1 applies');
    ws.ws.close();
    wsPack.ws.close();
  });

  it('interop - MQTT → NATS and NATS → MQTT carry identical bytes', async () => {
    const org = testOrg();
    const col = await collect(nc, `hub.${org}.>`);
    const m = await client(org, 'm');
    await m.client.subscribeAsync('from-nats/#');
    const bin = Buffer.from([1, 2, 3, 0, 255]);
    await m.client.publishAsync('to/nats', bin, { qos: 1 });
    const [n] = await col.waitCount(1);
    assert.equal(n.subject, `hub.${org}.to.nats`);
    assert.deepEqual(Buffer.from(n.data), bin);
    col.stop();
    nc.publish(`hub.${org}.from-nats.a`, bin);
    nc.publish(`hub.${org}.from-nats.b`, '{"k":"v"}');
    const got = await m.waitFor(2);
    assert.deepEqual(got[0].payload, bin);
    assert.equal(got[1].payload.toString(), '{"k":"v"}');
  });

  it('websocket transport - MQTT.js over ws://…/mqtt talks to TCP clients', async () => {
    const org = testOrg();
    const w = await client(org, 'w', { ws: true, protocolVersion: 5 });
    const t = await client(org, 't');
    await w.client.subscribeAsync('ws/#', { qos: 1 });
    await t.client.subscribeAsync('ws/#', { qos: 1 });
    await t.client.publishAsync('ws/from-tcp', 'a', { qos: 1 });
    await w.client.publishAsync('ws/from-ws', 'b', { qos: 1 });
    assert.deepEqual((await w.waitFor(2)).map((m) => m.topic).sort(), ['ws/from-tcp', 'ws/from-ws']);
    assert.deepEqual((await t.waitFor(2)).map((m) => m.topic).sort(), ['ws/from-tcp', 'ws/from-ws']);
  });

  it('sessions - session present is read from each CONNACK: 0 for a new persistent session, 1 when resumed, 0 after a clean one', async () => {
    const org = testOrg();
    const first = await client(org, 'p', { clean: false, clientId: 'persist-1' });
    assert.equal(first.connack.sessionPresent, false);
    first.client.end(true);
    // the session is parked asynchronously once the socket closes: reconnect until it is found
    let present = false;
    const deadline = Date.now() + 5000;
    while (!present && Date.now() < deadline) {
      const again = await client(org, 'p', { clean: false, clientId: 'persist-1' });
      present = again.connack.sessionPresent;
      again.client.end(true);
    }
    assert.equal(present, true, 'the stored session was found');
    const clean = await client(org, 'p', { clean: true, clientId: 'persist-1' });
    assert.equal(clean.connack.sessionPresent, false);
    clean.client.end(true);
    const after = await client(org, 'p', { clean: false, clientId: 'persist-1' });
    assert.equal(after.connack.sessionPresent, false, 'the clean connection ended the stored session');
  });

  it('listener - a busy explicit ORGHUB_MQTT_PORT stops the hub (exit 2); a busy default port only warns', async () => {
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const busy = (blocker.address() as net.AddressInfo).port;
    try {
      const bad = await startHubProcess({ ...issuer.env, ORGHUB_MQTT_PORT: String(busy) }, { waitReady: false });
      const code = await new Promise<number | null>((resolve) => bad.child.once('exit', resolve));
      assert.equal(code, 2);
      assert.match(bad.output(), /ORGHUB_MQTT_PORT/);
    } finally {
      blocker.close();
    }
    // The default 1883 is Mosquitto's on this machine (and in CI infra/local).
    const inUse = await new Promise<boolean>((resolve) => {
      const s = net.connect(1883, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (!inUse) return;
    const ok = await startHubProcess({ ...issuer.env, ORGHUB_MQTT_PORT: '', ORGHUB_HOST: '127.0.0.1' });
    try {
      const lines = ok.output().split('\n').filter((l) => l.includes('ORGHUB_MQTT_PORT'));
      assert.equal(lines.length, 1, ok.output());
    } finally {
      await ok.stop();
    }
  });
});
