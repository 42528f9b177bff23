import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { sleep, TestClient, type Frame } from '../testing/wsClient.ts';
import { collect, connectNats, natsServer, type NatsServer } from '../testing/natsClient.ts';

// A private NATS is a cluster of its own: its hubs keep presence under their own prefix, or they
// would reap other suites' dead nodes and announce the leaves where nobody listens (docs/presence.md).
const PRIVATE_PRESENCE = `test:presence:${randomUUID()}:`;

const MAX_BODY = 65536;

/**
 * The HTTP API and the ops endpoints against a real hub process; the NATS outage runs on a second
 * hub wired to a private nats-server that the test kills and restarts.
 */
describe('http publish api', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let outageHub: HubProcess;
  let nats: NatsServer;
  const clients: TestClient[] = [];

  const connect = async (h: HubProcess, org: string, sub: string, roles = ['admin']) => {
    const c = await TestClient.connect(h.wsUrl, await issuer.token(org, sub, roles));
    clients.push(c);
    return c;
  };
  const expectOk = async (c: TestClient, frame: Frame) => {
    const r = await c.request(frame);
    assert.equal(r.op, 'ok', `${JSON.stringify(frame)} → ${JSON.stringify(r)}`);
  };
  const post = async (path: string, body: unknown, opts: { token?: string; raw?: string; contentType?: string; h?: HubProcess } = {}) => {
    const headers: Record<string, string> = { 'content-type': opts.contentType ?? 'application/json' };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const res = await fetch(`${(opts.h ?? hub).url}${path}`, { method: 'POST', headers, body: opts.raw ?? JSON.stringify(body) });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: res.status, body: json, type: res.headers.get('content-type') };
  };
  /** A chunked POST (no content-length) through node:http, which writes the body in `chunks`. */
  const postChunked = (path: string, token: string, chunks: string[]) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const req = request(`${hub.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
        res.on('error', reject);
      });
      req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
      void (async () => {
        for (const c of chunks) {
          if (req.destroyed) return;
          req.write(c);
          await sleep(5);
        }
        req.end();
      })();
    });

  before(async () => {
    issuer = await createTestIssuer();
    nats = await natsServer();
    await nats.start();
    [hub, outageHub] = await Promise.all([
      startHubProcess({ ...issuer.env, ORGHUB_HTTP_MAX_BODY: String(MAX_BODY) }, { timeoutMs: 45_000 }),
      startHubProcess({ ...issuer.env, NATS_URL: nats.url, ORGHUB_PRESENCE_PREFIX: PRIVATE_PRESENCE }, { timeoutMs: 45_000 }),
    ]);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all([hub?.stop(), outageHub?.stop()]);
    await nats?.kill();
  });

  it('http api - POST /v1/publish with a valid token reaches a WebSocket subscriber', async () => {
    const org = testOrg();
    const ws = await connect(hub, org, 'listener');
    await expectOk(ws, { op: 'sub', topic: 'devices/+/telemetry' });
    const r = await post('/v1/publish', { topic: 'devices/d1/telemetry', data: { temp: 20.5, tags: ['a'] } }, { token: await issuer.token(org, 'backend', ['service']) });
    assert.deepEqual([r.status, r.body], [200, { ok: true }]);
    assert.match(r.type ?? '', /^application\/json/);
    const m = await ws.waitFor((f) => f.op === 'msg');
    assert.deepEqual({ sub: m.sub, topic: m.topic, data: m.data, from: m.from }, { sub: 'devices/+/telemetry', topic: 'devices/d1/telemetry', data: { temp: 20.5, tags: ['a'] }, from: 'backend' });
    // The access_token query parameter is for the WebSocket upgrade only (issue 10): URLs end up in logs.
    const q = await fetch(`${hub.url}/v1/publish?access_token=${encodeURIComponent(await issuer.token(org, 'q'))}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"topic":"devices/d2/telemetry","data":2}' });
    assert.equal(q.status, 401);
    assert.equal(((await q.json()) as { error: { message: string } }).error.message, 'token_missing');
  });

  it('http api - a request without a valid token gets 401 unauthorized', async () => {
    const none = await post('/v1/publish', { topic: 'x', data: 1 });
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'unauthorized');
    assert.equal(none.body.error.message, 'token_missing');
    const expired = await post('/v1/publish', { topic: 'x', data: 1 }, { token: await issuer.sign({ sub: 'u', org: testOrg(), exp: Math.floor(Date.now() / 1000) - 10 }) });
    assert.deepEqual([expired.status, expired.body.error.code, expired.body.error.message], [401, 'unauthorized', 'token_expired']);
    const garbage = await post('/v1/publish/batch', [{ topic: 'x', data: 1 }], { token: 'nope' });
    assert.deepEqual([garbage.status, garbage.body.error.code], [401, 'unauthorized']);
  });

  it('http api - another org token cannot publish into org A', async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const a = await connect(hub, orgA, 'a-listener');
    const b = await connect(hub, orgB, 'b-listener');
    await expectOk(a, { op: 'sub', topic: '#' });
    await expectOk(b, { op: 'sub', topic: '#' });
    const tokenB = await issuer.token(orgB, 'b-backend', ['service']);
    for (const topic of ['x', `${orgA}/x`, 'devices/d1/t']) assert.equal((await post('/v1/publish', { topic, data: 'SECRET-B' }, { token: tokenB })).status, 200);
    for (const body of [{ topic: 'x', data: 1, org: orgA }, { topic: `../${orgA}/x`, data: 1 }, { topic: `hub.${orgA}.x`, data: 1 }]) {
      const r = await post('/v1/publish', body, { token: tokenB });
      assert.equal(r.status, 400, JSON.stringify(r));
    }
    assert.equal((await post('/v1/publish/batch', [{ topic: 'y', data: 'SECRET-B' }], { token: tokenB })).status, 200);
    // Positive control, sent last.
    assert.equal((await post('/v1/publish', { topic: 'ctl', data: 'MARK-A' }, { token: await issuer.token(orgA, 'a-backend') })).status, 200);
    await a.waitFor((f) => f.op === 'msg' && f.topic === 'ctl');
    await b.waitFor((f) => f.op === 'msg' && f.topic === 'y');
    // The markers came last through the hub's one NATS connection, so a leak would already be in;
    // a ping round trip reads whatever the hub queued before it.
    await Promise.all([a.settle(), b.settle()]);
    assert.deepEqual(a.messages().map((m) => m.data), ['MARK-A']);
    assert.equal(b.messages().length, 4, 'org B publishes stayed in org B');
  });

  it('http api - forbidden, invalid, non-JSON and badly typed requests get their stable codes', async () => {
    const org = testOrg();
    const device = await issuer.token(org, 'd1', ['device']);
    const admin = await issuer.token(org, 'admin');
    const cases: { body?: unknown; raw?: string; token: string; contentType?: string; status: number; code: string; path?: string }[] = [
      { body: { topic: 'devices/d2/x', data: 1 }, token: device, status: 403, code: 'forbidden' },
      { body: { topic: 'devices/d1', data: 1 }, token: device, status: 403, code: 'forbidden' },
      { body: { topic: '$presence/d1', data: 1 }, token: admin, status: 403, code: 'forbidden' },
      { body: { topic: 'x' }, token: admin, status: 400, code: 'invalid' },
      { body: { data: 1 }, token: admin, status: 400, code: 'invalid' },
      { body: { topic: 'x', data: 1, extra: true }, token: admin, status: 400, code: 'invalid' },
      { body: { topic: 42, data: 1 }, token: admin, status: 400, code: 'invalid' },
      { body: [{ topic: 'x', data: 1 }], token: admin, status: 400, code: 'invalid' },
      { body: { topic: 'x', data: 1 }, token: admin, path: '/v1/publish/batch', status: 400, code: 'invalid' },
      { body: [], token: admin, path: '/v1/publish/batch', status: 400, code: 'invalid' },
      { body: { topic: 'a/+', data: 1 }, token: admin, status: 400, code: 'bad_topic' },
      { body: { topic: 'a//b', data: 1 }, token: admin, status: 400, code: 'bad_topic' },
      { body: { topic: 'a.b', data: 1 }, token: admin, status: 400, code: 'bad_topic' },
      { raw: '{"topic":"x","data":', token: admin, status: 400, code: 'bad_frame' },
      { raw: 'not json at all', token: admin, status: 400, code: 'bad_frame' },
      { raw: '', token: admin, status: 400, code: 'bad_frame' },
      { raw: `{"topic":"x","data":${'['.repeat(30_000)}${']'.repeat(30_000)}}`, token: admin, status: 400, code: 'invalid' },
      { body: { topic: 'x', data: 1 }, contentType: 'text/plain', token: admin, status: 400, code: 'invalid' },
    ];
    for (const c of cases) {
      const r = await post(c.path ?? '/v1/publish', c.body, { token: c.token, raw: c.raw, contentType: c.contentType });
      assert.equal(r.status, c.status, `${JSON.stringify(c.body ?? c.raw).slice(0, 80)} → ${JSON.stringify(r.body)}`);
      assert.equal(r.body?.error?.code, c.code, `${JSON.stringify(c.body ?? c.raw).slice(0, 80)} → ${JSON.stringify(r.body)}`);
      assert.equal(typeof r.body.error.message, 'string');
    }
    // Positive control: the device may publish under its own subtree.
    assert.equal((await post('/v1/publish', { topic: 'devices/d1/t', data: 1 }, { token: device })).status, 200);
  });

  it('http api - a body over ORGHUB_HTTP_MAX_BODY gets 413 too_large, with content-length or chunked', async () => {
    const org = testOrg();
    const token = await issuer.token(org, 'big');
    const ws = await connect(hub, org, 'listener');
    await expectOk(ws, { op: 'sub', topic: '#' });
    const big = JSON.stringify({ topic: 'big', data: 'x'.repeat(MAX_BODY) });
    const r = await post('/v1/publish', undefined, { token, raw: big });
    assert.deepEqual([r.status, r.body.error.code], [413, 'too_large']);
    const rb = await post('/v1/publish/batch', undefined, { token, raw: JSON.stringify([{ topic: 'big', data: 'x'.repeat(MAX_BODY) }]) });
    assert.deepEqual([rb.status, rb.body.error.code], [413, 'too_large']);

    const chunked = await postChunked('/v1/publish', token, ['{"topic":"big","data":"', ...Array.from({ length: 70 }, () => 'x'.repeat(1000)), '"}']);
    assert.deepEqual([chunked.status, chunked.body.error.code], [413, 'too_large']);
    // Positive controls: a chunked body under the limit, and a body exactly at it, are accepted.
    const small = await postChunked('/v1/publish', token, ['{"topic":"small",', '"data":"', 'y'.repeat(100), '"}']);
    assert.deepEqual([small.status, small.body], [200, { ok: true }]);
    const exact = JSON.stringify({ topic: 'exact', data: 'z'.repeat(MAX_BODY - JSON.stringify({ topic: 'exact', data: '' }).length) });
    assert.equal(Buffer.byteLength(exact), MAX_BODY);
    assert.equal((await post('/v1/publish', undefined, { token, raw: exact })).status, 200);
    await ws.waitFor((f) => f.op === 'msg' && f.topic === 'exact');
    await ws.settle(); // 'exact' was published last: anything refused-but-published would be in already
    assert.deepEqual(ws.messages().map((m) => m.topic), ['small', 'exact']);
  });

  it('http api - a batch publishes every item in order, and a batch with one refused item publishes nothing', async () => {
    const org = testOrg();
    const ws = await connect(hub, org, 'listener');
    await expectOk(ws, { op: 'sub', topic: 'devices/#' });
    const token = await issuer.token(org, 'd1', ['device']);
    const items = Array.from({ length: 50 }, (_, i) => ({ topic: `devices/d1/${i % 2 ? 'a' : 'b'}`, data: { i } }));
    const ok = await post('/v1/publish/batch', items, { token });
    assert.deepEqual([ok.status, ok.body], [200, { ok: true, published: 50 }]);
    await ws.waitFor((f) => f.op === 'msg' && f.data?.i === 49);
    assert.deepEqual(ws.messages().map((m) => m.data.i), items.map((_, i) => i));
    ws.frames.length = 0;

    const refused = [...items.slice(0, 3), { topic: 'devices/d2/x', data: 'not mine' }, ...items.slice(3, 6)];
    const r = await post('/v1/publish/batch', refused, { token });
    assert.deepEqual([r.status, r.body.error.code], [403, 'forbidden']);
    assert.match(r.body.error.message, /\[3\]/, 'the message names the index');
    const badTopic = await post('/v1/publish/batch', [...items.slice(0, 2), { topic: 'a/#', data: 1 }], { token });
    assert.deepEqual([badTopic.status, badTopic.body.error.code], [400, 'bad_topic']);
    assert.match(badTopic.body.error.message, /\[2\]/);
    // A value the hub cannot encode, late in the batch, must not cut the batch in half either.
    const deep = await post('/v1/publish/batch', undefined, { token, raw: `[{"topic":"devices/d1/a","data":1},{"topic":"devices/d1/a","data":${'['.repeat(30_000)}${']'.repeat(30_000)}}]` });
    assert.equal(deep.status, 400, JSON.stringify(deep.body));
    assert.match(deep.body.error.message, /\[1\]/);

    assert.equal((await post('/v1/publish', { topic: 'devices/d1/ctl', data: 'ctl' }, { token })).status, 200);
    await ws.waitFor((f) => f.op === 'msg' && f.topic === 'devices/d1/ctl');
    await ws.settle(); // the control was published last: a refused batch's item would be in already
    assert.deepEqual(ws.messages().map((m) => m.topic), ['devices/d1/ctl'], 'refused batches published nothing');
  });

  it('http api - /health, /ready and /metrics answer', async () => {
    const health = await fetch(`${hub.url}/health`);
    assert.equal(health.status, 200);
    const ready = await fetch(`${hub.url}/ready`);
    assert.equal(ready.status, 200);
    const body = (await ready.json()) as { status: string; checks: Record<string, { status: string }> };
    assert.equal(body.status, 'ready');
    assert.equal(body.checks.nats?.status, 'up');
    // Redis is named without the MQTT bridge too, and the event store shows its backlog.
    assert.equal(body.checks.redis?.status, 'up');
    assert.equal(typeof (body.checks.eventstore as { pending?: unknown } | undefined)?.pending, 'number');
    const ws = await connect(hub, testOrg(), 'metrics');
    const metrics = await (await fetch(`${hub.url}/metrics`)).text();
    assert.match(metrics, /^orghub_ws_connections [1-9]\d*$/m);
    await ws.close();
    // the connect above was audited through the event store: its write path shows on /metrics
    let store = '';
    for (let i = 0; i < 100 && !/^orghub_eventstore_batches_total [1-9]/m.test(store); i++) {
      await sleep(50);
      store = await (await fetch(`${hub.url}/metrics`)).text();
    }
    assert.match(store, /^orghub_eventstore_appends_total [1-9]\d*$/m);
    assert.match(store, /^orghub_eventstore_batches_total [1-9]\d*$/m);
    assert.match(store, /^orghub_eventstore_pending \d+$/m);
    assert.equal((await fetch(`${hub.url}/v1/nope`, { method: 'POST' })).status, 404);
  });

  it('http api - while NATS is down publishes get unavailable (WS err, HTTP 503); the hub reconnects and resubscribes by itself', async (t) => {
    const org = testOrg();
    const token = await issuer.token(org, 'backend');
    const sub = await connect(outageHub, org, 'subscriber');
    const pub = await connect(outageHub, org, 'publisher');
    await expectOk(sub, { op: 'sub', topic: 'o/#' });
    await expectOk(pub, { op: 'pub', topic: 'o/before', data: 1 });
    await sub.waitFor((f) => f.op === 'msg' && f.topic === 'o/before');

    await nats.kill();
    let wsErr: Frame | undefined;
    let acceptedWhileDown = 0; // acked in the moment before the hub noticed the outage
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(50)) {
      const r = await pub.request({ op: 'pub', topic: 'o/during', data: 'lost?' });
      if (r.op === 'err') {
        wsErr = r;
        break;
      }
      acceptedWhileDown++;
    }
    t.diagnostic(`pubs acked after the kill, before the hub noticed: ${acceptedWhileDown}`);
    assert.equal(wsErr?.code, 'unavailable', 'pub over WebSocket is refused while NATS is down');
    const http = await post('/v1/publish', { topic: 'o/during', data: 1 }, { token, h: outageHub });
    assert.deepEqual([http.status, http.body.error.code], [503, 'unavailable']);
    const batch = await post('/v1/publish/batch', [{ topic: 'o/during', data: 1 }], { token, h: outageHub });
    assert.deepEqual([batch.status, batch.body.error.code], [503, 'unavailable']);
    // /ready is cached (ORGHUB_READY_CACHE_MS): the 200 the start-up poll saw may still be served for a moment.
    let notReady = await fetch(`${outageHub.url}/ready`);
    for (const deadline = Date.now() + 5000; notReady.status !== 503 && Date.now() < deadline; await sleep(50)) notReady = await fetch(`${outageHub.url}/ready`);
    assert.equal(notReady.status, 503);
    assert.equal(((await notReady.json()) as any).checks.nats.status, 'down');
    assert.equal((await fetch(`${outageHub.url}/health`)).status, 200, '/health answers while the process lives');

    await nats.start();
    const restarted = Date.now();
    let ready = false;
    while (!ready && Date.now() - restarted < 5000) {
      ready = (await fetch(`${outageHub.url}/ready`)).status === 200;
      if (!ready) await sleep(100);
    }
    assert.ok(ready, 'the hub did not reconnect to NATS within 5 s');
    // The subscription made before the outage works again, for WebSocket, HTTP and raw NATS publishers.
    let after: Frame | undefined;
    for (const deadline = Date.now() + 3000; !after && Date.now() < deadline; ) {
      const r = await pub.request({ op: 'pub', topic: 'o/after', data: 'ws' });
      if (r.op === 'ok') after = r;
      else await sleep(50);
    }
    assert.ok(after, 'pub over WebSocket works again');
    await sub.waitFor((f) => f.op === 'msg' && f.topic === 'o/after');
    assert.equal((await post('/v1/publish', { topic: 'o/http', data: 'http' }, { token, h: outageHub })).status, 200);
    await sub.waitFor((f) => f.op === 'msg' && f.topic === 'o/http');
    const nc = await connectNats(nats.url);
    const seen = await collect(nc, `hub.${org}.>`);
    nc.publish(`hub.${org}.o.nats`, new TextEncoder().encode('"raw"'));
    await sub.waitFor((f) => f.op === 'msg' && f.topic === 'o/nats');
    await expectOk(pub, { op: 'pub', topic: 'o/seen', data: 1 });
    await seen.waitCount(2);
    await nc.close();
    const late = sub.messages('o/during').length;
    assert.ok(late <= acceptedWhileDown, `${late} refused publishes were delivered after all`);
    assert.equal(sub.closeCode, undefined, 'WebSocket clients stay connected through the outage');
  });
});
