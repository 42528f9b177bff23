import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient } from '../testing/wsClient.ts';
import { RawClient } from '../mqtt/mqttTestKit.ts';
import pg from 'pg';

/**
 * Per-tier quotas on one real hub (Postgres event store, MQTT bridge, real Redis): message size,
 * distinct patterns per org per node, commands in flight per connection, retained bytes per org.
 * Each refusal has a positive control: another org, or the same org under its bound.
 */
const small = testOrg('q');
const orgs = {
  [small]: { maxMessageBytes: 100, patternsPerNode: 3, inflightCommands: 2, retainedBytes: 600 },
};

describe('quotas', () => {
  let issuer: TestIssuer;
  let hub: HubProcess;
  let mqttPort: number;
  const clients: TestClient[] = [];
  const raws: RawClient[] = [];
  const open = async (org: string, sub: string) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub));
    clients.push(c);
    return c;
  };
  const mqtt5 = async (org: string, sub: string) => {
    const raw = await RawClient.open(mqttPort, 5);
    raws.push(raw);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: `${sub}-${randomUUID().slice(0, 6)}`, keepalive: 60, username: 'x', password: Buffer.from(await issuer.token(org, sub)) } as never, 5);
    assert.equal(((await raw.waitFor((p) => p.cmd === 'connack')) as { reasonCode?: number }).reasonCode ?? 0, 0);
    return raw;
  };

  before(async () => {
    issuer = await createTestIssuer();
    mqttPort = await freePort();
    // A wide group-commit window keeps commands in flight long enough to count them.
    hub = await startHubProcess({ ...issuer.env, ORGHUB_MQTT_PORT: String(mqttPort), ORGHUB_GROUP_COMMIT_MS: '100', ORGHUB_LIMITS_ORGS: JSON.stringify(orgs), ORGHUB_HISTORY_NAMESPACES: 'hist=100:600' }, { timeoutMs: 60_000 });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    for (const r of raws.splice(0)) r.socket.destroy();
  });
  after(async () => {
    await hub?.stop();
  });

  it('quotas - an org\'s tier and settings.limits come from the orgs read model; an org without a row keeps the default tier', async () => {
    const org = testOrg('rm');
    const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub', max: 1 });
    try {
      // As the projector would write it (the test connects as the owner, a superuser here).
      await pool.query(`INSERT INTO orgs (org_id, id, tier, settings, first_event_at, last_event_at) VALUES ($1, $1, 'free', $2, now(), now())`, [org, JSON.stringify({ limits: { maxMessageBytes: 30 } })]);
      const c = await open(org, 'a');
      assert.equal((await c.request({ op: 'pub', topic: 'x', data: 'y'.repeat(40) })).code, 'too_large');
      assert.equal((await c.request({ op: 'pub', topic: 'x', data: 'y'.repeat(10) })).op, 'ok');
      const other = await open(testOrg('ctl'), 'a');
      assert.equal((await other.request({ op: 'pub', topic: 'x', data: 'y'.repeat(40) })).op, 'ok');
    } finally {
      await pool.query('DELETE FROM orgs WHERE org_id = $1', [org]).catch(() => {});
      await pool.end();
    }
  });

  it('quotas - a publish above the tier message size gets too_large (WebSocket) and 0x97 (MQTT 5); a smaller one and another org pass', async () => {
    const c = await open(small, 'a');
    assert.equal((await c.request({ op: 'pub', topic: 'x', data: 'y'.repeat(200) })).code, 'too_large');
    assert.equal((await c.request({ op: 'pub', topic: 'x', data: 'y'.repeat(50) })).op, 'ok');
    const other = await open(testOrg('ctl'), 'a');
    assert.equal((await other.request({ op: 'pub', topic: 'x', data: 'y'.repeat(200) })).op, 'ok');
    const m = await mqtt5(small, 'm');
    m.send({ cmd: 'publish', topic: 'x', payload: Buffer.alloc(200, 1), qos: 1, messageId: 7, retain: false, dup: false } as never, 5);
    assert.equal(((await m.waitFor((p) => p.cmd === 'puback' && p.messageId === 7)) as { reasonCode?: number }).reasonCode, 0x97);
    m.send({ cmd: 'publish', topic: 'x', payload: Buffer.alloc(20, 1), qos: 1, messageId: 8, retain: false, dup: false } as never, 5);
    assert.equal(((await m.waitFor((p) => p.cmd === 'puback' && p.messageId === 8)) as { reasonCode?: number }).reasonCode ?? 0, 0);
  });

  it('quotas - distinct patterns per org per node are capped across connections and transports; repeats and other orgs are not', async () => {
    const a = await open(small, 'a');
    const b = await open(small, 'b');
    for (const t of ['p/1', 'p/2']) assert.equal((await a.request({ op: 'sub', topic: t })).op, 'ok');
    assert.equal((await b.request({ op: 'sub', topic: 'p/1' })).op, 'ok', 'a pattern the org already holds costs nothing');
    assert.equal((await b.request({ op: 'sub', topic: 'p/3' })).op, 'ok');
    assert.equal((await b.request({ op: 'sub', topic: 'p/4' })).code, 'limit');
    const m = await mqtt5(small, 'm');
    m.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'p/5', qos: 1 }, { topic: 'p/2', qos: 1 }] } as never, 5);
    assert.deepEqual(((await m.waitFor((p) => p.cmd === 'suback')) as { granted: number[] }).granted, [0x97, 1]);
    const other = await open(testOrg('ctl'), 'a');
    for (const t of ['p/1', 'p/2', 'p/3', 'p/4', 'p/5']) assert.equal((await other.request({ op: 'sub', topic: t })).op, 'ok');
    // Released patterns free their place.
    assert.equal((await a.request({ op: 'unsub', topic: 'p/2' })).op, 'ok');
    m.socket.destroy();
    raws.splice(0);
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) ok = (await b.request({ op: 'sub', topic: 'p/4' })).op === 'ok' || (await new Promise((r) => setTimeout(r, 50)), false);
    assert.ok(ok, 'p/4 fits once p/2 is gone from every connection');
  });

  it('quotas - history-topic subscriptions count against the distinct-pattern cap and free it on unsub and close', async () => {
    const a = await open(small, 'ha');
    // The previous test's connections release their patterns as the hub sees them close.
    for (const t of ['hist/1', 'hist/2', 'hist/3']) {
      let r: any;
      for (let i = 0; i < 50; i++) {
        r = await a.request({ op: 'sub', topic: t });
        if (r.op === 'ok') break;
        await new Promise((res) => setTimeout(res, 50));
      }
      assert.deepEqual([r.op, typeof r.offset], ['ok', 'number'], JSON.stringify(r));
    }
    const over = await a.request({ op: 'sub', topic: 'hist/4' });
    assert.equal(over.code, 'limit');
    // Positive control: another org holds the same history topics
    const other = await open(testOrg('ctl'), 'a');
    for (const t of ['hist/1', 'hist/2', 'hist/3', 'hist/4']) assert.equal((await other.request({ op: 'sub', topic: t })).op, 'ok');
    assert.equal((await a.request({ op: 'unsub', topic: 'hist/1' })).op, 'ok');
    assert.equal((await a.request({ op: 'sub', topic: 'hist/4' })).op, 'ok', 'hist/4 fits once hist/1 is released');
    a.close();
    const b = await open(small, 'hb');
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) ok = (await b.request({ op: 'sub', topic: 'hist/5' })).op === 'ok' || (await new Promise((r) => setTimeout(r, 50)), false);
    assert.ok(ok, 'a closed connection releases its history patterns');
    for (const t of ['hist/6', 'hist/7']) assert.equal((await b.request({ op: 'sub', topic: t })).op, 'ok');
    assert.equal((await b.request({ op: 'sub', topic: 'hist/8' })).code, 'limit');
  });

  it('quotas - commands in flight per connection are bounded; those within the bound are acked', async () => {
    const c = await open(small, 'admin');
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => c.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: `k-${i}` }, 15_000)));
    const ok = answers.filter((a) => a.op === 'ok');
    const limited = answers.filter((a) => a.code === 'limit');
    assert.equal(ok.length + limited.length, 6, JSON.stringify(answers));
    assert.equal(ok.length, 2, 'the two in flight are acked');
    const again = await c.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: 'after' }, 15_000);
    assert.equal(again.op, 'ok', 'the bound is on commands in flight, not in total');
  });

  it('quotas - retained bytes per org: a retained publish past them gets 0x97; replacing smaller, and another org, pass', async () => {
    const m = await mqtt5(small, 'r');
    const retain = async (raw: RawClient, id: number, topic: string, bytes: number) => {
      raw.send({ cmd: 'publish', topic, payload: Buffer.alloc(bytes, 2), qos: 1, messageId: id, retain: true, dup: false } as never, 5);
      return ((await raw.waitFor((p) => p.cmd === 'puback' && p.messageId === id)) as { reasonCode?: number }).reasonCode ?? 0;
    };
    assert.equal(await retain(m, 1, 'r/1', 90), 0);
    assert.equal(await retain(m, 2, 'r/2', 90), 0);
    assert.equal(await retain(m, 3, 'r/3', 90), 0);
    assert.equal(await retain(m, 4, 'r/4', 90), 0);
    assert.equal(await retain(m, 5, 'r/5', 90), 0x97, 'past 600 bytes (values carry ~40 bytes of metadata each)');
    assert.equal(await retain(m, 6, 'r/1', 10), 0, 'a smaller replacement is always allowed');
    assert.equal(await retain(m, 7, 'r/2', 0), 0, 'an empty payload deletes and frees its bytes');
    assert.equal(await retain(m, 8, 'r/5', 90), 0, 'so the refused one fits now');
    const o = await mqtt5(testOrg('ctl'), 'r');
    for (let i = 1; i <= 6; i++) assert.equal(await retain(o, i, `r/${i}`, 90), 0);
  });
});
