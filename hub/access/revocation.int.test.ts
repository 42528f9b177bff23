// test-run: serial (timing assertions; scripts/test.mjs runs these one at a time after the rest)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/transport-node';
import type { IDisconnectPacket } from 'mqtt-packet';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { connectNats } from '../testing/natsClient.ts';
import { sleep, TestClient } from '../testing/wsClient.ts';
import { connect as mqttConnect, type MqttHub } from '../mqtt/mqttTestKit.ts';
import { startTwoNodes } from './testNodes.ts';
import { signControl } from '../bus/signedControl.ts';
import { DEV_CLUSTER_SECRET } from './access.ts';
import { REVOCATION_CONTROL } from './revocations.ts';

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/orghub';

/** Live WebSocket client that remembers when it closed (performance.now()). */
interface Tracked {
  c: TestClient;
  closedAt?: number;
}

/**
 * Two real hub processes (WebSocket + MQTT bridge) on the shared NATS, Redis and Postgres, with
 * their own cluster secret. Every test uses its own org.
 */
describe('revocation across two nodes', () => {
  let issuer: TestIssuer;
  let h1: MqttHub;
  let h2: MqttHub;
  let nc: NatsConnection;
  let pool: pg.Pool;
  const open: Tracked[] = [];
  const mqttClients: { client: { end(force?: boolean): void } }[] = [];

  const ws = async (h: MqttHub, token: string): Promise<Tracked> => {
    const t: Tracked = { c: await TestClient.connect(h.hub.wsUrl, token) };
    void t.c.closed.then(() => (t.closedAt = performance.now()));
    open.push(t);
    return t;
  };
  const revoke = async (h: MqttHub, token: string | undefined, body: unknown, init: { contentType?: string; raw?: string } = {}) => {
    const sent = performance.now();
    const r = await fetch(`${h.hub.url}/v1/revocations`, {
      method: 'POST',
      headers: { 'content-type': init.contentType ?? 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: init.raw ?? JSON.stringify(body),
    });
    const json = (await r.json()) as any;
    return { status: r.status, json, sent, at: performance.now() };
  };
  const admin = (org: string) => issuer.token(org, `admin-${randomUUID().slice(0, 6)}`, ['admin']);
  const until = async (cond: () => boolean, ms = 5000) => {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) return false;
      await sleep(10);
    }
    return true;
  };
  /** The hub-assigned session ids of `subs`, from their session.connected audit events. */
  const sessionsOf = async (org: string, subs: string[]): Promise<Map<string, string>> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await pool.query(`SELECT metadata->>'actor' AS actor, metadata->>'session' AS session FROM events WHERE org_id = $1 AND stream_id = 'audit' AND type = 'audit.session.connected'`, [org]);
      const m = new Map<string, string>(r.rows.map((x) => [x.actor, x.session]));
      if (subs.every((s) => m.has(s))) return m;
      if (Date.now() > deadline) throw new Error(`sessions not audited: ${subs.filter((s) => !m.has(s)).join(',')}`);
      await sleep(100);
    }
  };

  before(async () => {
    issuer = await createTestIssuer();
    ({ nodes: [h1, h2] } = await startTwoNodes(issuer));
    nc = await connectNats();
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await Promise.all(open.map((t) => t.c.close()));
    for (const m of mqttClients) m.client.end(true);
    await nc?.close();
    await pool?.end();
    await Promise.all([h1?.hub.stop(), h2?.hub.stop()]);
  });

  it('revocation - jti, sub, session and issuedBefore close exactly the matching sessions on both nodes (WS 4101, MQTT 5 0x98, 3.1.1 close), recorded and audited', async () => {
    const org = testOrg();
    const now = Math.floor(Date.now() / 1000);
    // jti: the same token on both nodes and both transports; a bystander token of the same sub.
    const tJ = await issuer.token(org, 'alice', ['device'], { jti: 'j-stolen' });
    const j1 = await ws(h1, tJ);
    const j2 = await ws(h2, tJ);
    const m5 = await mqttConnect(h1.tcpUrl, tJ, { protocolVersion: 5, clientId: 'alice-5' });
    const m4 = await mqttConnect(h2.tcpUrl, tJ, { protocolVersion: 4, clientId: 'alice-4' });
    mqttClients.push(m5, m4);
    let m5Disconnect: IDisconnectPacket | undefined;
    let m5Closed = false;
    let m4Closed = false;
    m5.client.on('disconnect', (p: IDisconnectPacket) => (m5Disconnect = p));
    m5.client.on('close', () => (m5Closed = true));
    m4.client.on('close', () => (m4Closed = true));
    const keep = await ws(h2, await issuer.token(org, 'alice', ['device'], { jti: 'j-other' }));
    // sub: bob on both nodes; carol untouched.
    const b1 = await ws(h1, await issuer.token(org, 'bob', ['device'], { jti: 'b-1' }));
    const b2 = await ws(h2, await issuer.token(org, 'bob', ['device'], { jti: 'b-2' }));
    const carol = await ws(h1, await issuer.token(org, 'carol', ['device']));
    // issuedBefore: dave's old token goes, his new one stays.
    const dOld = await ws(h2, await issuer.sign({ sub: 'dave', org, roles: ['device'], iat: now - 120 }));
    const dNew = await ws(h1, await issuer.sign({ sub: 'dave', org, roles: ['device'], iat: now }));
    // session: two connections of erin's one token; only the named one goes.
    const tE = await issuer.token(org, 'erin', ['device']);
    const e1 = await ws(h2, tE);
    const sessions = await sessionsOf(org, ['erin']);
    const e2 = await ws(h1, tE);
    const adminToken = await admin(org);

    const r1 = await revoke(h1, adminToken, { jti: 'j-stolen' });
    assert.equal(r1.status, 200, JSON.stringify(r1.json));
    assert.equal(r1.json.revocation.kind, 'jti');
    assert.equal(r1.json.announced, true);
    assert.ok(await until(() => j1.closedAt !== undefined && j2.closedAt !== undefined && m5Closed && m4Closed), 'every session of the token closed');
    assert.equal(j1.c.closeCode, 4101);
    assert.equal(j2.c.closeCode, 4101);
    assert.equal(m5Disconnect?.reasonCode, 0x98, 'MQTT 5 hears DISCONNECT 0x98 (administrative action)');

    assert.equal((await revoke(h2, adminToken, { sub: 'bob' })).status, 200);
    assert.ok(await until(() => b1.closedAt !== undefined && b2.closedAt !== undefined));
    assert.equal(b1.c.closeCode, 4101);

    assert.equal((await revoke(h1, adminToken, { sub: 'dave', issuedBefore: now - 60 })).status, 200);
    assert.ok(await until(() => dOld.closedAt !== undefined));

    assert.equal((await revoke(h1, adminToken, { session: sessions.get('erin') })).status, 200);
    assert.ok(await until(() => e1.closedAt !== undefined));
    assert.equal(e1.c.closeCode, 4101);

    // Barrier instead of a sleep: every rule was applied on both nodes before the closes awaited
    // above, so a ping answered now proves that no rule closed these (a close would come first).
    await Promise.all([keep, carol, dNew, e2].map((t) => t.c.settle().catch(() => {})));
    for (const [name, t] of [['alice other jti', keep], ['carol', carol], ['dave new token', dNew], ['erin other session', e2]] as const) {
      assert.equal(t.closedAt, undefined, `${name} stays connected`);
    }
    assert.equal((await keep.c.request({ op: 'sub', topic: 'devices/alice/#' })).op, 'ok', 'the bystander still works');

    // Recorded in the event store (access stream) and audited as admin.action.
    const deadline = Date.now() + 5000;
    let rows: any[] = [];
    while (Date.now() < deadline) {
      rows = (await pool.query(`SELECT stream_id, type, data, metadata FROM events WHERE org_id = $1 AND (type = 'access.revoked' OR type = 'audit.admin.action') ORDER BY global_position`, [org])).rows;
      if (rows.filter((r) => r.type === 'audit.admin.action').length >= 4) break;
      await sleep(100);
    }
    const recorded = rows.filter((r) => r.type === 'access.revoked');
    assert.equal(recorded.length, 4);
    assert.equal(recorded[0].stream_id, 'access');
    assert.equal(recorded[0].data.jti, 'j-stolen');
    assert.match(recorded[0].metadata.actor, /^admin-/);
    const audited = rows.filter((r) => r.type === 'audit.admin.action');
    assert.equal(audited.length, 4);
    // Two nodes audit on their own (each in order, not across nodes): compared as a set.
    assert.deepEqual(audited.map((r) => r.data.kind).sort(), ['jti', 'session', 'sub', 'sub']);
    assert.equal(audited.find((r) => r.data.kind === 'jti')?.data.eventId, r1.json.eventId);
  });

  it('revocation - 100 revocations across both nodes: time from the 2xx to the close, p99 <= 1 s', async () => {
    const org = testOrg();
    const now = Math.floor(Date.now() / 1000);
    const nodes = [h1, h2];
    const targets: { t: Tracked; body: Record<string, unknown>; api: MqttHub }[] = [];
    const kinds = ['jti', 'sub', 'session', 'issuedBefore'] as const;
    for (let i = 0; i < 100; i++) {
      const sub = `u${i}`;
      const kind = kinds[i % 4]!;
      const token = await issuer.sign({ sub, org, roles: ['device'], jti: `jti-${i}`, iat: now - 30 });
      const t = await ws(nodes[(i >> 1) % 2]!, token);
      const body = kind === 'jti' ? { jti: `jti-${i}` } : kind === 'sub' ? { sub } : kind === 'issuedBefore' ? { sub, issuedBefore: now - 10 } : {};
      targets.push({ t, body, api: nodes[i % 2]! });
    }
    const sessions = await sessionsOf(org, targets.filter((_, i) => i % 4 === 2).map((_, k) => `u${k * 4 + 2}`));
    targets.forEach((x, i) => {
      if (i % 4 === 2) x.body = { session: sessions.get(`u${i}`) };
    });
    const adminToken = await admin(org);
    const lat: number[] = [];
    /** The stricter figure: from sending the request (not from its answer) to the close. */
    const full: number[] = [];
    for (const x of targets) {
      const r = await revoke(x.api, adminToken, x.body);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.ok(await until(() => x.t.closedAt !== undefined, 5000), `closed after ${JSON.stringify(x.body)}`);
      assert.equal(x.t.c.closeCode, 4101);
      // A session on the answering node is closed before the 2xx is written: 0 then.
      lat.push(Math.max(0, x.t.closedAt! - r.at));
      full.push(x.t.closedAt! - r.sent);
    }
    const figures = (xs: number[]) => {
      xs.sort((a, b) => a - b);
      const q = (p: number) => xs[Math.min(xs.length - 1, Math.ceil(p * xs.length) - 1)]!;
      return { n: xs.length, p50: +q(0.5).toFixed(1), p99: +q(0.99).toFixed(1), max: +xs[xs.length - 1]!.toFixed(1) };
    };
    const fig = figures(lat);
    console.log(`# revocation latency (2xx -> close, ms): ${JSON.stringify(fig)}; request sent -> close: ${JSON.stringify(figures(full))}`);
    assert.ok(fig.p99 <= 1000, `p99 ${fig.p99} ms`);
  });

  it('revocation - a revoked token cannot connect (WS on both nodes, MQTT) nor refresh in band', async () => {
    const org = testOrg();
    const revoked = await issuer.token(org, 'frank', ['device'], { jti: 'f-old' });
    assert.equal((await revoke(h2, await admin(org), { jti: 'f-old' })).status, 200);
    for (const h of [h1, h2]) {
      await assert.rejects(TestClient.connect(h.hub.wsUrl, revoked), (e: any) => e.status === 401 && e.body === 'token_revoked');
    }
    await assert.rejects(mqttConnect(h1.tcpUrl, revoked, { protocolVersion: 5 }), (e: any) => e.code === 0x87);
    // a live connection of frank's (another token) refreshing with the revoked one: refused, stays open
    const live = await ws(h1, await issuer.token(org, 'frank', ['device'], { jti: 'f-new' }));
    const r = await live.c.request({ op: 'auth', token: revoked });
    assert.deepEqual([r.op, r.code, r.message], ['err', 'unauthorized', 'token_revoked']);
    // positive control: a fresh token refreshes fine
    assert.equal((await live.c.request({ op: 'auth', token: await issuer.token(org, 'frank', ['device'], { jti: 'f-newer' }) })).op, 'ok');
    assert.equal(live.closedAt, undefined);
    // and the HTTP API refuses the revoked token too
    const pub = await fetch(`${h2.hub.url}/v1/publish`, { method: 'POST', headers: { authorization: `Bearer ${revoked}`, 'content-type': 'application/json' }, body: JSON.stringify({ topic: 'devices/frank/x', data: 1 }) });
    assert.equal(pub.status, 401);
    assert.equal(((await pub.json()) as any).error.message, 'token_revoked');
  });

  it('revocation - only an org admin may revoke, and only inside its own org', async () => {
    const orgA = testOrg();
    const orgB = testOrg();
    const alice = await ws(h1, await issuer.token(orgA, 'alice', ['device']));
    // org B's own alice, on the same node: its close proves that node applied org B's rule
    const aliceB = await ws(h1, await issuer.token(orgB, 'alice', ['device']));
    const device = await revoke(h1, await issuer.token(orgA, 'mallory', ['device']), { sub: 'alice' });
    assert.equal(device.status, 403);
    assert.equal(device.json.error.code, 'forbidden');
    const service = await revoke(h2, await issuer.token(orgA, 'svc', ['service']), { sub: 'alice' });
    assert.equal(service.status, 403);
    // org B's admin revokes "alice": that is org B's alice, never org A's
    const other = await revoke(h2, await admin(orgB), { sub: 'alice' });
    assert.equal(other.status, 200);
    const missing = await revoke(h1, undefined, { sub: 'alice' });
    assert.equal(missing.status, 401);
    assert.ok(await until(() => aliceB.closedAt !== undefined), "org B's alice is closed on node 1");
    await alice.c.settle().catch(() => {});
    assert.equal(alice.closedAt, undefined, 'alice in org A is untouched');
    // positive control: org A's admin can
    assert.equal((await revoke(h2, await admin(orgA), { sub: 'alice' })).status, 200);
    assert.ok(await until(() => alice.closedAt !== undefined));
    assert.equal(alice.c.closeCode, 4101);
  });

  it('revocation - hostile input: malformed, oversized, wrong type, extra fields, token in the query', async () => {
    const org = testOrg();
    const tok = await admin(org);
    const cases: [string, Awaited<ReturnType<typeof revoke>>, number, string][] = [
      ['not JSON', await revoke(h1, tok, undefined, { raw: '{"jti":' }), 400, 'bad_frame'],
      ['wrong content-type', await revoke(h1, tok, { jti: 'x' }, { contentType: 'text/plain' }), 400, 'invalid'],
      ['oversized', await revoke(h1, tok, { jti: 'x', pad: 'p'.repeat(10_000) }), 413, 'too_large'],
      ['empty object', await revoke(h1, tok, {}), 400, 'invalid'],
      ['array', await revoke(h1, tok, [{ jti: 'x' }]), 400, 'invalid'],
      ['an org in the body', await revoke(h1, tok, { jti: 'x', org: 'other' }), 400, 'invalid'],
      ['two kinds', await revoke(h1, tok, { jti: 'x', session: 'y' }), 400, 'invalid'],
      ['future issuedBefore', await revoke(h1, tok, { sub: 'x', issuedBefore: Math.floor(Date.now() / 1000) + 3600 }), 400, 'invalid'],
      ['huge id', await revoke(h1, tok, { jti: 'j'.repeat(300) }), 400, 'invalid'],
      ['control characters', await revoke(h1, tok, { sub: 'a\u0000b' }), 400, 'invalid'],
    ];
    for (const [name, r, status, code] of cases) {
      assert.equal(r.status, status, `${name}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.code, code, name);
    }
    // the token is only taken from the header on admin routes (not from ?access_token=)
    const q = await fetch(`${h1.hub.url}/v1/revocations?access_token=${tok}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jti":"x"}' });
    assert.equal(q.status, 401);
    // positive control: the same token with a good body is accepted
    assert.equal((await revoke(h1, tok, { jti: 'x' })).status, 200);
  });

  it('revocation - forged control messages (unsigned, or signed with the public development secret) change nothing', async () => {
    const org = testOrg();
    const victim = await ws(h1, await issuer.token(org, 'victim', ['device'], { jti: 'v1' }));
    const dev = await mqttConnect(h2.tcpUrl, await issuer.token(org, 'dev', ['device']), { protocolVersion: 5, clientId: 'dev-1' });
    mqttClients.push(dev);
    let devClosed = false;
    dev.client.on('close', () => (devClosed = true));
    const rule = { kind: 'sub', org, sub: 'victim', issuedBefore: Math.floor(Date.now() / 1000) + 10, until: Date.now() + 60_000 };
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o));
    nc.publish(`orghub.ctl.${REVOCATION_CONTROL}`, enc(rule));
    nc.publish(`orghub.ctl.${REVOCATION_CONTROL}`, signControl(Buffer.from(DEV_CLUSTER_SECRET), REVOCATION_CONTROL, enc(rule)));
    const k = createHash('sha256').update(org).update('\u0000').update('dev-1').digest('base64url');
    const takeover = { k, node: 'forger', session: 'zzzz', at: Date.now() + 1e6 };
    nc.publish('orghub.ctl.mqtt.takeover', enc(takeover));
    nc.publish('orghub.ctl.mqtt.takeover', signControl(Buffer.from(DEV_CLUSTER_SECRET), 'mqtt.takeover', enc(takeover)));
    await nc.flush();
    // Barrier instead of a sleep: after the flush the server has queued the forgeries to both
    // nodes, so a real rule announced by one node reaches the other after them. One sentinel per
    // node, revoked through the other node; once both are closed, both nodes handled the forgeries.
    const sentinels = [await ws(h1, await issuer.token(org, 'sentinel-1', ['device'])), await ws(h2, await issuer.token(org, 'sentinel-2', ['device']))];
    assert.equal((await revoke(h2, await admin(org), { sub: 'sentinel-1' })).status, 200);
    assert.equal((await revoke(h1, await admin(org), { sub: 'sentinel-2' })).status, 200);
    assert.ok(await until(() => sentinels.every((s) => s.closedAt !== undefined)), 'the real rules closed the sentinels');
    await victim.c.settle().catch(() => {});
    // a PUBACK comes after any DISCONNECT (bounded: a closed client may never answer)
    await Promise.race([dev.client.publishAsync('devices/dev/x', 'ping', { qos: 1 }).catch(() => {}), sleep(5000)]);
    assert.equal(victim.closedAt, undefined, 'the forged revocation closed nothing');
    assert.equal(devClosed, false, 'the forged takeover closed nothing');
    await assert.doesNotReject(TestClient.connect(h2.hub.wsUrl, await issuer.token(org, 'victim', ['device'], { jti: 'v2' })).then((c) => c.close()), 'and new tokens of the victim still connect');
    // positive control: the real API closes the victim
    assert.equal((await revoke(h2, await admin(org), { sub: 'victim' })).status, 200);
    assert.ok(await until(() => victim.closedAt !== undefined));
  });
});
