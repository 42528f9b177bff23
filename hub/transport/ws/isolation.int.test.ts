import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import type { NatsConnection } from '@nats-io/transport-node';
import { createTestIssuer, type TestIssuer } from '../../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../../testing/hubProcess.ts';
import { sleep, TestClient, type Frame } from '../../testing/wsClient.ts';
import { collect, connectNats } from '../../testing/natsClient.ts';

/**
 * Org isolation against a real hub process and real NATS. Every test has a positive control (a
 * same-org message that must arrive), so "nothing arrived" cannot pass because nothing works.
 */
describe('isolation', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let nc: NatsConnection;
  const clients: TestClient[] = [];
  const enc = new TextEncoder();

  const connect = async (org: string, sub: string, opts: { enc?: 'json' | 'msgpack'; roles?: string[] } = {}) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub, opts.roles ?? ['admin']), { enc: opts.enc });
    clients.push(c);
    return c;
  };
  const expectOk = async (c: TestClient, frame: Frame) => {
    const r = await c.request(frame);
    assert.equal(r.op, 'ok', `${JSON.stringify(frame)} → ${JSON.stringify(r)}`);
  };
  const expectErr = async (c: TestClient, frame: Frame, code: string) => {
    const r = await c.request(frame);
    assert.equal(r.op, 'err', `${JSON.stringify(frame)} should fail with ${code}, got ${JSON.stringify(r)}`);
    assert.equal(r.code, code, `${JSON.stringify(frame)} → ${JSON.stringify(r)}`);
  };
  /** Asserts that every msg a client got carries its own org's marker, and that there was at least one. */
  const onlyOwn = (c: TestClient, marker: string, label: string) => {
    const msgs = c.messages();
    assert.ok(msgs.length > 0, `${label}: positive control missing`);
    for (const m of msgs) assert.ok(JSON.stringify(m).includes(marker) && !JSON.stringify(m).includes('SECRET-B'), `${label} got a foreign message: ${JSON.stringify(m)}`);
  };

  before(async () => {
    issuer = await createTestIssuer();
    hub = await startHubProcess(issuer.env, { timeoutMs: 45_000 });
    nc = await connectNats();
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await nc?.close();
    await hub?.stop();
  });

  /** Org B's traffic by every path: WebSocket publishes (json and msgpack) and raw NATS, incl. system topics. */
  const orgBTraffic = async (orgB: string) => {
    const b = await connect(orgB, 'b-admin');
    const bm = await connect(orgB, 'b-mp', { enc: 'msgpack' });
    for (const t of ['x', 'a/b', 'devices/d1/t', 'devices/d1/telemetry/deep/er']) {
      await expectOk(b, { op: 'pub', topic: t, data: { secret: 'SECRET-B', t } });
      await expectOk(bm, { op: 'pub', topic: t, data: Buffer.from('SECRET-B') });
    }
    for (const s of ['x', 'a.b', 'devices.d1.t', '$presence.d1', '$sys.x', '$x']) nc.publish(`hub.${orgB}.${s}`, enc.encode(JSON.stringify({ secret: 'SECRET-B' })));
    await nc.flush();
  };

  it('isolation - no wildcard or system pattern in org A receives org B messages (json and msgpack)', async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const aj = await connect(orgA, 'a-admin');
    const am = await connect(orgA, 'a-mp', { enc: 'msgpack' });
    // B's own subscriber: proves B's traffic really flowed.
    const bObserver = await connect(orgB, 'b-observer');
    await expectOk(bObserver, { op: 'sub', topic: '#' });
    await expectOk(bObserver, { op: 'sub', topic: '$presence/#' });

    for (const c of [aj, am]) {
      for (const t of ['#', '+/#', '+', 'x', 'a/b', 'devices/#', 'devices/+/t', '$presence/#']) await expectOk(c, { op: 'sub', topic: t });
      await expectErr(c, { op: 'sub', topic: '$sys/#' }, 'forbidden');
      await expectErr(c, { op: 'sub', topic: '$#' }, 'bad_topic');
      await expectErr(c, { op: 'sub', topic: '$' }, 'bad_topic');
      await expectErr(c, { op: 'sub', topic: `${orgB}.>` }, 'bad_topic');
      await expectErr(c, { op: 'sub', topic: '>' }, 'bad_topic');
      await expectErr(c, { op: 'sub', topic: '*' }, 'bad_topic');
      await expectErr(c, { op: 'sub', topic: '#/x' }, 'bad_topic');
    }

    await orgBTraffic(orgB);
    // Positive control in org A, sent after all of B's traffic.
    const a2 = await connect(orgA, 'a-ctl');
    await expectOk(a2, { op: 'pub', topic: 'a/b', data: { mark: 'MARK-A' } });
    nc.publish(`hub.${orgA}.x`, enc.encode(JSON.stringify({ mark: 'MARK-A' })));
    await nc.flush();
    await aj.waitFor((f) => f.op === 'msg' && f.topic === 'x');
    await am.waitFor((f) => f.op === 'msg' && f.topic === 'x');
    await bObserver.waitFor((f) => f.op === 'msg' && f.topic === '$presence/d1');
    await Promise.all([aj.settle(), am.settle(), bObserver.settle()]);

    onlyOwn(aj, 'MARK-A', 'json client of org A');
    onlyOwn(am, 'MARK-A', 'msgpack client of org A');
    // A's `#`, `+/#`, `a/b` overlap: the control reached the connection exactly once, naming one of them.
    assert.equal(aj.messages('a/b').length, 1);
    assert.ok(['#', '+/#', 'a/b'].includes(aj.messages('a/b')[0].sub));
    assert.ok(bObserver.messages().length >= 4 + 4 + 3, 'org B traffic did flow');
    assert.ok(!bObserver.messages().some((m) => JSON.stringify(m).includes('MARK-A')), 'org B saw nothing of org A');
  });

  it('isolation - publish trickery in org A never reaches org B (topics, frames, encodings)', async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const bWs = await connect(orgB, 'b-observer');
    await expectOk(bWs, { op: 'sub', topic: '#' });
    const bNats = await collect(nc, `hub.${orgB}.>`);
    const aObserver = await connect(orgA, 'a-observer');
    await expectOk(aObserver, { op: 'sub', topic: '#' });
    const aj = await connect(orgA, 'a-admin');
    const am = await connect(orgA, 'a-mp', { enc: 'msgpack' });

    for (const c of [aj, am]) {
      const data = { secret: 'SECRET-A' };
      for (const topic of [`../${orgB}/x`, `hub.${orgB}.x`, `${orgB}.x`, `/${orgB}/x`, `%2F${orgB}%2Fx`, `x%2F..%2F${orgB}`, 'devices/ｄ1/t', 'devices/d1\u0000/t', 'a\u202e/b', 'a b', '*', '>', 'a/#', 'a/+', '', 'x'.repeat(600)]) {
        const r = await c.request({ op: 'pub', topic, data });
        assert.equal(r.op, 'err', `pub to ${JSON.stringify(topic)} must fail`);
        assert.ok(r.code === 'bad_topic' || r.code === 'invalid', `pub to ${JSON.stringify(topic)}: ${JSON.stringify(r)}`);
      }
      // A frame naming an org is refused outright by the frame schema, whatever the org.
      for (const extra of [{ org: orgB }, { org: orgA }, { tid: orgB }, { subject: `hub.${orgB}.x` }]) {
        await expectErr(c, { op: 'pub', topic: 'x', data, ...extra }, 'invalid');
        await expectErr(c, { op: 'sub', topic: '#', ...extra }, 'invalid');
      }
      // Looks like org B, but it is only a topic inside org A.
      await expectOk(c, { op: 'pub', topic: `${orgB}/devices/d1/t`, data });
      await expectOk(c, { op: 'pub', topic: 'hub', data });
    }
    nc.publish(`hub.${orgA}.ctl`, enc.encode('"end"'));
    await nc.flush();
    await aObserver.waitFor((f) => f.op === 'msg' && f.topic === 'ctl');
    await sleep(300);

    // Positive control: both stayed inside org A, under the literal topic.
    assert.deepEqual(aObserver.messages(`${orgB}/devices/d1/t`).length, 2);
    assert.deepEqual(aObserver.messages('hub').length, 2);
    assert.equal(bWs.messages().length, 0, `org B WebSocket saw ${JSON.stringify(bWs.messages())}`);
    assert.equal(bNats.msgs.length, 0, `org B NATS saw ${bNats.msgs.map((m) => m.subject)}`);
    bNats.stop();
  });

  it('isolation - a token whose org claim could smuggle a NATS token is refused at upgrade', async () => {
    for (const org of ['a.b', 'a*', '>', 'a.>', '*', 'a b', '', 'ｏrg', 'a/b', 'x'.repeat(65)]) {
      const token = await issuer.sign({ sub: 'u1', org, roles: ['admin'] });
      await assert.rejects(TestClient.connect(hub.wsUrl, token), (err: any) => err.status === 401 && err.body === 'bad_claim:org', `org ${JSON.stringify(org)}`);
    }
    for (const org of [['a', 'b'], 42, { id: 'a' }, null]) {
      const token = await issuer.sign({ sub: 'u1', org, roles: ['admin'] });
      await assert.rejects(TestClient.connect(hub.wsUrl, token), (err: any) => err.status === 401, `org ${JSON.stringify(org)}`);
    }
    // Positive control.
    const c = await connect(testOrg(), 'u1');
    await expectOk(c, { op: 'sub', topic: '#' });
  });

  it('isolation - the Authorization header wins over access_token: the query org never gets in', async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const url = `${hub.wsUrl}?access_token=${encodeURIComponent(await issuer.token(orgB, 'same'))}`;
    const ws = new WebSocket(url, ['orghub.v1.json'], { headers: { authorization: `Bearer ${await issuer.token(orgA, 'same')}` } });
    const frames: Frame[] = [];
    ws.on('message', (d: Buffer) => frames.push(...[JSON.parse(d.toString())].flat()));
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    try {
      ws.send(JSON.stringify({ op: 'sub', id: 1, topic: '#' }));
      ws.send(JSON.stringify({ op: 'pub', id: 2, topic: 'from/mixed', data: 'MARK-A' }));
      const bObserver = await connect(orgB, 'b-observer');
      await expectOk(bObserver, { op: 'sub', topic: '#' });
      const aObserver = await connect(orgA, 'a-observer');
      await expectOk(aObserver, { op: 'sub', topic: '#' });
      const bPub = await connect(orgB, 'b-pub');
      await expectOk(bPub, { op: 'pub', topic: 'b/secret', data: 'SECRET-B' });
      await expectOk(aObserver, { op: 'pub', topic: 'a/ctl', data: 'MARK-A' });
      ws.send(JSON.stringify({ op: 'pub', id: 3, topic: 'from/mixed2', data: 'MARK-A' }));
      await aObserver.waitFor((f) => f.op === 'msg' && f.topic === 'from/mixed2');
      await bObserver.waitFor((f) => f.op === 'msg' && f.topic === 'b/secret');
      await sleep(300);
      const msgs = frames.filter((f) => f.op === 'msg');
      assert.ok(msgs.some((m) => m.topic === 'a/ctl'), 'positive control: org A message arrives on the mixed connection');
      assert.ok(!msgs.some((m) => JSON.stringify(m).includes('SECRET-B')), `the mixed connection saw org B: ${JSON.stringify(msgs)}`);
      assert.ok(!bObserver.messages().some((m) => m.topic.startsWith('from/')), 'publishes of the mixed connection landed in org B');
    } finally {
      ws.close();
    }
  });

  it('isolation - an auth frame with an org B token is refused and the subscriptions stay as they were', async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const a = await connect(orgA, 'same');
    await expectOk(a, { op: 'sub', topic: '#' });
    await expectErr(a, { op: 'auth', token: await issuer.token(orgB, 'same') }, 'forbidden');
    await expectErr(a, { op: 'auth', token: await issuer.token(orgB, 'same', ['service']) }, 'forbidden');
    const bPub = await connect(orgB, 'b-pub');
    await expectOk(bPub, { op: 'pub', topic: 'x', data: 'SECRET-B' });
    // The connection still publishes into A, not B.
    const bObserver = await connect(orgB, 'b-observer');
    await expectOk(bObserver, { op: 'sub', topic: '#' });
    await expectOk(a, { op: 'pub', topic: 'x', data: 'MARK-A' });
    await a.waitFor((f) => f.op === 'msg' && f.topic === 'x');
    await expectOk(bPub, { op: 'pub', topic: 'y', data: 'SECRET-B' });
    await bObserver.waitFor((f) => f.op === 'msg' && f.topic === 'y');
    await Promise.all([a.settle(), bObserver.settle()]);
    onlyOwn(a, 'MARK-A', 'refreshed-with-B connection');
    assert.deepEqual(bObserver.messages().map((m) => m.data), ['SECRET-B']);
  });

  it('isolation - a device token is confined to devices/{sub}/#', async () => {
    const org = testOrg();
    const d1 = await connect(org, 'd1', { roles: ['device'] });
    const admin = await connect(org, 'admin');
    await expectOk(admin, { op: 'sub', topic: 'devices/#' });

    await expectOk(d1, { op: 'sub', topic: 'devices/d1/#' });
    await expectOk(d1, { op: 'sub', topic: 'devices/d1/+' });
    await expectOk(d1, { op: 'sub', topic: 'devices/d1/x' });
    for (const topic of ['devices/+/#', 'devices/#', '#', '+/#', '+/d1/#', 'devices/d2/x', 'devices/d2/#', 'devices/+/x', 'devices/d1', 'devices', '$presence/#', 'x']) {
      await expectErr(d1, { op: 'sub', topic }, 'forbidden');
    }
    for (const topic of ['devices/d2/x', 'devices/d1', 'x', 'devices/d10/x', 'devices/d/x']) await expectErr(d1, { op: 'pub', topic, data: 'nope' }, 'forbidden');
    await expectErr(d1, { op: 'pub', topic: '$presence/d1', data: 'nope' }, 'forbidden');

    // Positive control: its own topics work both ways.
    await expectOk(d1, { op: 'pub', topic: 'devices/d1/telemetry', data: { v: 1 } });
    await expectOk(admin, { op: 'pub', topic: 'devices/d1/cmd', data: { v: 2 } });
    await expectOk(admin, { op: 'pub', topic: 'devices/d2/cmd', data: 'for d2 only' });
    await admin.waitFor((f) => f.op === 'msg' && f.topic === 'devices/d2/cmd');
    await d1.waitFor((f) => f.op === 'msg' && f.topic === 'devices/d1/cmd');
    await Promise.all([admin.settle(), d1.settle()]);
    assert.deepEqual(admin.messages().map((m) => m.topic), ['devices/d1/telemetry', 'devices/d1/cmd', 'devices/d2/cmd']);
    assert.ok(!d1.messages().some((m) => m.topic === 'devices/d2/cmd'));
    // Its overlapping `devices/d1/#` and `devices/d1/+` deliver each message once (no amplification).
    assert.deepEqual(d1.messages().map((m) => m.topic).sort(), ['devices/d1/cmd', 'devices/d1/telemetry']);
    for (const m of d1.messages()) assert.ok(['devices/d1/#', 'devices/d1/+'].includes(m.sub), m.sub);
  });
});
