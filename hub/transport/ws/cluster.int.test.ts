import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import { Packr } from 'msgpackr';
import { createTestIssuer, type TestIssuer } from '../../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../../testing/hubProcess.ts';
import { TestClient } from '../../testing/wsClient.ts';
import { collect, connectNats } from '../../testing/natsClient.ts';

/**
 * Two real hub processes sharing the real NATS at 127.0.0.1:4222, plus a plain NATS client
 * playing a backend service. Every test uses its own org.
 */
describe('cluster', () => {
  let issuer: TestIssuer;
  let node1: HubProcess;
  let node2: HubProcess;
  let nc: NatsConnection;
  const clients: TestClient[] = [];
  const enc = new TextEncoder();
  const dec = new TextDecoder();

  const client = async (hub: HubProcess, org: string, sub: string, opts: { enc?: 'json' | 'msgpack'; roles?: string[] } = {}) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub, opts.roles ?? ['admin']), { enc: opts.enc });
    clients.push(c);
    return c;
  };
  const subscribe = async (c: TestClient, topic: string) => {
    const r = await c.request({ op: 'sub', topic });
    assert.equal(r.op, 'ok', `sub ${topic}: ${JSON.stringify(r)}`);
  };

  before(async () => {
    issuer = await createTestIssuer();
    [node1, node2] = await Promise.all([startHubProcess(issuer.env, { timeoutMs: 45_000 }), startHubProcess(issuer.env, { timeoutMs: 45_000 })]);
    nc = await connectNats();
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await nc?.close();
    await Promise.all([node1?.stop(), node2?.stop()]);
  });

  it('cluster - a message published on node 1 reaches a subscriber on node 2, and back', async () => {
    const org = testOrg();
    const a = await client(node1, org, 'alice');
    const b = await client(node2, org, 'bob');
    await subscribe(a, 'chat/#');
    await subscribe(b, 'chat/#');

    assert.equal((await a.request({ op: 'pub', topic: 'chat/room1', data: { n: 1, text: 'from node 1' } })).op, 'ok');
    const atB = await b.waitFor((f) => f.op === 'msg' && f.data?.n === 1);
    assert.deepEqual({ sub: atB.sub, topic: atB.topic, data: atB.data, from: atB.from }, { sub: 'chat/#', topic: 'chat/room1', data: { n: 1, text: 'from node 1' }, from: 'alice' });
    assert.equal(typeof atB.ts, 'number');
    assert.ok(Math.abs(atB.ts - Date.now()) < 10_000, 'ts is the publishing hub clock in ms');

    assert.equal((await b.request({ op: 'pub', topic: 'chat/room2', data: { n: 2 } })).op, 'ok');
    const atA = await a.waitFor((f) => f.op === 'msg' && f.data?.n === 2);
    assert.equal(atA.topic, 'chat/room2');
    assert.equal(atA.from, 'bob');
  });

  it('cluster - a NATS subscriber on hub.<org>.> receives WebSocket publishes as the exact JSON bytes with metadata headers', async () => {
    const org = testOrg();
    const nats = await collect(nc, `hub.${org}.>`);
    const c = await client(node1, org, 'pub-1');
    const data = { a: 1, nested: { list: [1, 2.5, 'x', null, true] }, unicode: 'héllo ✓ 😀', quote: '"\\' };
    assert.equal((await c.request({ op: 'pub', topic: 'devices/d1/telemetry', data })).op, 'ok');
    assert.equal((await c.request({ op: 'pub', topic: 'a', data: 'just a string' })).op, 'ok');
    const [m1, m2] = await nats.waitCount(2);
    nats.stop();

    assert.equal(m1!.subject, `hub.${org}.devices.d1.telemetry`);
    assert.deepEqual(Buffer.from(m1!.data), Buffer.from(JSON.stringify(data)), 'payload is the JSON text of data, unwrapped');
    assert.equal(m1!.headers?.get('Orghub-Content-Type'), 'json');
    assert.equal(m1!.headers?.get('Orghub-From'), 'pub-1');
    assert.ok(Number(m1!.headers?.get('Orghub-Ts')) > 0);
    assert.equal(m2!.subject, `hub.${org}.a`);
    assert.equal(dec.decode(m2!.data), '"just a string"');
  });

  it('cluster - a raw NATS publish on hub.<org>.devices.d1.t reaches WebSocket subscribers of devices/+/t on both nodes', async () => {
    const org = testOrg();
    const a = await client(node1, org, 'u1');
    const b = await client(node2, org, 'u2');
    await subscribe(a, 'devices/+/t');
    await subscribe(b, 'devices/+/t');

    nc.publish(`hub.${org}.devices.d1.t`, enc.encode('{"temp":21.5,"ok":true}'));
    await nc.flush();
    for (const c of [a, b]) {
      const m = await c.waitFor((f) => f.op === 'msg');
      assert.equal(m.sub, 'devices/+/t');
      assert.equal(m.topic, 'devices/d1/t');
      assert.deepEqual(m.data, { temp: 21.5, ok: true });
      assert.equal(m.enc, undefined);
      assert.equal(m.from, undefined, 'a raw NATS publisher has no from');
      assert.equal(m.ts, 0, 'ts is 0 when unknown');
    }
  });

  it('cluster - a non-JSON NATS payload arrives base64 with enc base64, and as bytes over msgpack', async () => {
    const org = testOrg();
    const j = await client(node1, org, 'u1');
    const m = await client(node2, org, 'u2', { enc: 'msgpack' });
    await subscribe(j, 'raw/#');
    await subscribe(m, 'raw/#');
    const bytes = Buffer.from([0xff, 0x00, 0x01, 0x7b, 0x22, 0xfe]);
    const text = Buffer.from('not json {');
    nc.publish(`hub.${org}.raw.bin`, bytes);
    nc.publish(`hub.${org}.raw.txt`, text);
    // A header claiming JSON does not make invalid JSON pass as JSON.
    const h = headers();
    h.set('Orghub-Content-Type', 'json');
    nc.publish(`hub.${org}.raw.liar`, text, { headers: h });
    await nc.flush();

    const seenJ = await Promise.all(['raw/bin', 'raw/txt', 'raw/liar'].map((t) => j.waitFor((f) => f.op === 'msg' && f.topic === t)));
    assert.deepEqual(seenJ.map((f) => [f.enc, f.data]), [
      ['base64', bytes.toString('base64')],
      ['base64', text.toString('base64')],
      ['base64', text.toString('base64')],
    ]);
    const seenM = await Promise.all(['raw/bin', 'raw/txt'].map((t) => m.waitFor((f) => f.op === 'msg' && f.topic === t)));
    assert.ok(seenM[0]!.data instanceof Uint8Array);
    assert.deepEqual(Buffer.from(seenM[0]!.data), bytes);
    assert.deepEqual(Buffer.from(seenM[1]!.data), text);
  });

  it('cluster - overlapping subscriptions deliver once per connection, naming one matching sub (no amplification)', async () => {
    const org = testOrg();
    const s = await client(node2, org, 'sub-1');
    const p = await client(node1, org, 'pub-1');
    const overlapping = ['devices/#', 'devices/+/telemetry', 'devices/d1/telemetry', 'devices/d1/+'];
    for (const t of [...overlapping, 'other/#']) await subscribe(s, t);

    assert.equal((await p.request({ op: 'pub', topic: 'devices/d1/telemetry', data: { v: 1 } })).op, 'ok');
    assert.equal((await p.request({ op: 'pub', topic: 'other/end', data: { v: 'end' } })).op, 'ok');
    await s.waitFor((f) => f.op === 'msg' && f.topic === 'other/end');
    await s.settle();
    const got = s.messages('devices/d1/telemetry');
    assert.equal(got.length, 1, 'one delivery however many of the connection\'s patterns match');
    assert.ok(overlapping.includes(got[0].sub), `sub names a matching pattern: ${got[0].sub}`);
    assert.equal(s.messages('other/end')[0].sub, 'other/#');
    for (const f of got) assert.deepEqual(f.data, { v: 1 });
    // Subscribing to the same pattern twice is one subscription, not two deliveries.
    await subscribe(s, 'other/#');
    assert.equal((await p.request({ op: 'pub', topic: 'other/again', data: 1 })).op, 'ok');
    await s.waitFor((f) => f.op === 'msg' && f.topic === 'other/again');
    await s.settle();
    assert.equal(s.messages('other/again').length, 1);
  });

  it('cluster - unsub stops delivery on that subscription only', async () => {
    const org = testOrg();
    const s = await client(node1, org, 'sub-1');
    const p = await client(node2, org, 'pub-1');
    await subscribe(s, 'x/#');
    await subscribe(s, 'ctl');
    assert.equal((await p.request({ op: 'pub', topic: 'x/1', data: 1 })).op, 'ok');
    await s.waitFor((f) => f.op === 'msg' && f.topic === 'x/1');

    assert.equal((await s.request({ op: 'unsub', topic: 'x/#' })).op, 'ok');
    assert.equal((await p.request({ op: 'pub', topic: 'x/2', data: 2 })).op, 'ok');
    nc.publish(`hub.${org}.x.3`, enc.encode('3'));
    await nc.flush();
    assert.equal((await p.request({ op: 'pub', topic: 'ctl', data: 'after' })).op, 'ok');
    await s.waitFor((f) => f.op === 'msg' && f.topic === 'ctl');
    await s.settle();
    assert.deepEqual(s.messages().map((f) => f.topic), ['x/1', 'ctl']);
    // Unsubscribing what was never subscribed is harmless.
    assert.equal((await s.request({ op: 'unsub', topic: 'never/#' })).op, 'ok');
  });

  it('cluster - msgpack subprotocol round trip: binary data becomes the exact bytes on NATS and returns as bytes', async () => {
    const org = testOrg();
    const nats = await collect(nc, `hub.${org}.>`);
    const m = await client(node1, org, 'mp-1', { enc: 'msgpack' });
    const j = await client(node2, org, 'js-1');
    await subscribe(m, 'bin/#');
    await subscribe(j, 'bin/#');
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255, 0x7b]);

    const okFrame = await m.request({ op: 'pub', topic: 'bin/raw', data: bytes });
    assert.equal(okFrame.op, 'ok');
    assert.equal((await m.request({ op: 'pub', topic: 'bin/obj', data: { k: [1, 'two'] } })).op, 'ok');
    const [raw, obj] = await nats.waitCount(2);
    nats.stop();
    assert.deepEqual(Buffer.from(raw!.data), bytes, 'binary data is published as the bytes themselves');
    assert.equal(raw!.headers?.get('Orghub-Content-Type'), 'bytes');
    assert.equal(dec.decode(obj!.data), '{"k":[1,"two"]}', 'a msgpack map is published as its JSON text');

    const back = await m.waitFor((f) => f.op === 'msg' && f.topic === 'bin/raw');
    assert.deepEqual(Buffer.from(back.data), bytes);
    assert.deepEqual((await m.waitFor((f) => f.op === 'msg' && f.topic === 'bin/obj')).data, { k: [1, 'two'] });
    const inJson = await j.waitFor((f) => f.op === 'msg' && f.topic === 'bin/raw');
    assert.equal(inJson.enc, 'base64');
    assert.equal(inJson.data, bytes.toString('base64'));

    // The hub's binary frames really are msgpack of the documented frame objects.
    const rawFrames: Buffer[] = [];
    m.ws.on('message', (d: Buffer) => rawFrames.push(d));
    m.send({ op: 'ping', id: 'p1' });
    await m.waitFor((f) => f.op === 'pong' && f.id === 'p1');
    assert.equal((new Packr({ useRecords: false, mapsAsObjects: true }).unpack(rawFrames.at(-1)!) as any).op, 'pong');
  });

  it('cluster - coalescing: 200 quick publishes arrive complete and in order, some in one array frame', async () => {
    const org = testOrg();
    const s = await client(node2, org, 'sub-1');
    const p = await client(node1, org, 'pub-1');
    await subscribe(s, 'burst/#');
    let arrays = 0;
    let wsMessages = 0;
    s.ws.on('message', (d: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      wsMessages++;
      if (d[0] === 0x5b /* [ */) arrays++;
    });

    const N = 200;
    for (let i = 0; i < N; i++) p.send({ op: 'pub', topic: 'burst/seq', data: { i, pad: 'x'.repeat(64) } });
    await s.waitFor((f) => f.op === 'msg' && f.data?.i === N - 1, 10_000);
    await s.settle();
    const got = s.messages('burst/seq').map((f) => f.data.i);
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i), 'every message, once, in publish order');
    assert.ok(arrays >= 1, `expected at least one coalesced array frame (got ${wsMessages} WebSocket messages for ${N} msgs)`);
    assert.ok(wsMessages < N, 'coalescing sent fewer WebSocket messages than msgs');
  });
});
