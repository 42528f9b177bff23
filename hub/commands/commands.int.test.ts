import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { barrierAcross, isBarrier, sleep, TestClient, type Frame } from '../testing/wsClient.ts';
import { scopedKey } from './commandService.ts';

/**
 * Commands end to end: two real hub processes (real NATS at 4222, real Postgres), real WebSocket and
 * HTTP clients, and the events table read directly. Every test uses its own org.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Row {
  org_id: string;
  stream_id: string;
  global_position: string;
  event_id: string;
  type: string;
  data: any;
  metadata: any;
  idempotency_key: string | null;
}

describe('commands', () => {
  let issuer: TestIssuer;
  let node1: HubProcess;
  let node2: HubProcess;
  let pool: pg.Pool;
  const clients: TestClient[] = [];

  /** Reads events as the BYPASSRLS projector role, with an explicit org filter (the owner may be under FORCE RLS). */
  const rows = async (org: string, where = 'true', params: unknown[] = []): Promise<Row[]> => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      const r = await c.query<Row>(
        `SELECT org_id, stream_id, global_position::text, event_id::text, type, data, metadata, idempotency_key FROM events WHERE org_id = $1 AND (${where}) ORDER BY global_position`,
        [org, ...params],
      );
      return r.rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  };
  /** Rows recorded under a client key, whoever the actor (stored scoped: scopedKey(actor, key)). */
  const byKey = (org: string, key: string) => rows(org, `right(idempotency_key, length($2) + 1) = ':' || $2`, [key]);

  /** Polls until an audit event of `type` matching `pred` is in the org's audit stream. */
  const waitAudit = async (org: string, type: string, pred: (r: Row) => boolean, timeoutMs = 5000): Promise<Row> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = (await rows(org, `stream_id = 'audit' AND type = $2`, [`audit.${type}`])).find(pred);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no audit.${type} in org ${org} after ${timeoutMs} ms`);
      await sleep(100);
    }
  };

  const connect = async (hub: HubProcess, org: string, sub: string, roles: string[] = ['admin']) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub, roles));
    clients.push(c);
    return c;
  };
  const subscribe = async (c: TestClient, topic: string) => {
    const r = await c.request({ op: 'sub', topic });
    assert.equal(r.op, 'ok', `sub ${topic}: ${JSON.stringify(r)}`);
  };
  const cmd = (c: TestClient, type: string, topic: string, data: unknown, key?: string) =>
    c.request(key === undefined ? { op: 'cmd', type, topic, data } : { op: 'cmd', type, topic, data, key });
  const httpCmd = async (hub: HubProcess, token: string, body: unknown) => {
    const r = await fetch(`${hub.url}/v1/commands`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as any };
  };
  const commandsFor = (c: TestClient, eventId: string) => c.messages().filter((m) => m.data?.commandId === eventId);

  before(async () => {
    issuer = await createTestIssuer();
    [node1, node2] = await Promise.all([startHubProcess(issuer.env, { timeoutMs: 40_000 }), startHubProcess(issuer.env, { timeoutMs: 40_000 })]);
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all([node1?.stop(), node2?.stop()]);
    await pool?.end();
  });

  it('commands - a ws cmd should be acked with a UUIDv7 eventId and position once the event is in the store, and reach online subscribers', async () => {
    // Given an admin and a device subscribed to its own subtree
    const org = testOrg();
    const admin = await connect(node1, org, 'alice');
    const device = await connect(node1, org, 'd1', ['device']);
    await subscribe(device, 'devices/d1/#');
    const key = `k-${randomUUID()}`;

    // When the admin issues a reboot
    const ok = await cmd(admin, 'device.reboot', 'devices/d1/commands', { reason: 'firmware 1.2', delaySeconds: 5 }, key);

    // Then the ok carries the event id and position, and the event is already committed
    assert.equal(ok.op, 'ok', JSON.stringify(ok));
    assert.match(ok.eventId, UUID_V7);
    assert.match(ok.position, /^\d+$/);
    assert.equal(ok.duplicate, undefined);
    const recorded = await byKey(org, key);
    assert.equal(recorded.length, 1, 'committed before the ok was sent');
    const [ev] = recorded;
    assert.equal(ev.event_id, ok.eventId);
    assert.equal(ev.global_position, ok.position);
    assert.equal(ev.org_id, org);
    assert.equal(ev.stream_id, 'commands:devices/d1/commands');
    assert.equal(ev.type, 'device.reboot');
    assert.deepEqual(ev.data, { reason: 'firmware 1.2', delaySeconds: 5 });
    assert.equal(ev.metadata.actor, 'alice');
    assert.equal(ev.metadata.idempotencyKey, scopedKey('alice', key));
    assert.match(ev.metadata.session, UUID);
    assert.match(ev.metadata.correlationId, UUID);
    assert.equal(typeof ev.metadata.node, 'string');
    assert.ok(ev.metadata.node.length > 0);
    // the session is the admin connection's own (the one its session.connected audit event names)
    const connected = await waitAudit(org, 'session.connected', (r) => r.metadata.actor === 'alice');
    assert.equal(ev.metadata.session, connected.metadata.session);

    // And the online device receives the command as published after the append
    const msg = await device.waitFor((f) => f.op === 'msg' && f.data?.commandId === ok.eventId);
    assert.equal(msg.topic, 'devices/d1/commands');
    assert.deepEqual(msg.data, { commandId: ok.eventId, type: 'device.reboot', data: { reason: 'firmware 1.2', delaySeconds: 5 }, issuedBy: 'alice', position: ok.position });
  });

  it('commands - POST /v1/commands should append, answer with eventId and position, and publish to subscribers', async () => {
    const org = testOrg();
    const device = await connect(node2, org, 'd7', ['device']);
    await subscribe(device, 'devices/d7/#');
    const key = `http-${randomUUID()}`;

    const r = await httpCmd(node1, await issuer.token(org, 'ops-bob'), { type: 'device.config', topic: 'devices/d7/commands', data: { settings: { rate: 10 } }, key });

    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.ok, true);
    assert.match(r.body.eventId, UUID_V7);
    const [ev, ...more] = await byKey(org, key);
    assert.equal(more.length, 0);
    assert.equal(ev.event_id, r.body.eventId);
    assert.equal(ev.global_position, r.body.position);
    assert.equal(ev.stream_id, 'commands:devices/d7/commands');
    assert.equal(ev.metadata.actor, 'ops-bob');
    assert.equal(ev.metadata.idempotencyKey, scopedKey('ops-bob', key));
    assert.match(ev.metadata.session, UUID);
    assert.match(ev.metadata.correlationId, UUID);
    assert.ok(ev.metadata.node);
    // published through NATS: a subscriber on the other node gets it
    const msg = await device.waitFor((f) => f.op === 'msg' && f.data?.commandId === r.body.eventId);
    assert.equal(msg.data.issuedBy, 'ops-bob');
    assert.deepEqual(msg.data.data, { settings: { rate: 10 } });
  });

  it('commands - a retry with the same key should return the original answer with duplicate: true and append nothing, over ws and http', async () => {
    const org = testOrg();
    const admin = await connect(node1, org, 'alice');
    const watcher = await connect(node1, org, 'watcher');
    await subscribe(watcher, 'devices/#');
    const key = `retry-${randomUUID()}`;
    const first = await cmd(admin, 'device.reboot', 'devices/d1/commands', {}, key);
    assert.equal(first.op, 'ok');

    // Given the same key again: on the same socket, on another node, and over HTTP
    const again = await cmd(admin, 'device.reboot', 'devices/d1/commands', {}, key);
    const other = await cmd(await connect(node2, org, 'alice'), 'device.reboot', 'devices/d1/commands', {}, key);
    const http = await httpCmd(node2, await issuer.token(org, 'alice'), { type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key });

    for (const r of [again, other]) assert.deepEqual({ op: r.op, eventId: r.eventId, position: r.position, duplicate: r.duplicate }, { op: 'ok', eventId: first.eventId, position: first.position, duplicate: true });
    assert.equal(http.status, 200);
    assert.deepEqual(http.body, { ok: true, eventId: first.eventId, position: first.position, duplicate: true });
    assert.equal((await byKey(org, key)).length, 1);
    assert.equal((await rows(org, `stream_id LIKE 'commands:%'`)).length, 1, 'nothing else appended');
    // a duplicate is not published a second time
    await watcher.waitFor((f) => f.op === 'msg' && f.data?.commandId === first.eventId);
    // Barrier: a marker from each node arrives after anything that node published before it.
    await barrierAcross(watcher, [node1.url, node2.url], await issuer.token(org, 'barrier'), 'devices/zz/barrier');
    assert.equal(commandsFor(watcher, first.eventId).length, 1);

    // And the other way round: first over HTTP, then the retry over WS
    const key2 = `retry2-${randomUUID()}`;
    const h = await httpCmd(node1, await issuer.token(org, 'alice'), { type: 'device.config', topic: 'devices/d2/commands', data: { settings: {} }, key: key2 });
    assert.equal(h.status, 200);
    assert.equal(h.body.duplicate, undefined);
    const w = await cmd(admin, 'device.config', 'devices/d2/commands', { settings: {} }, key2);
    assert.deepEqual([w.eventId, w.position, w.duplicate], [h.body.eventId, h.body.position, true]);
    assert.equal((await byKey(org, key2)).length, 1);
  });

  it('commands - 10 concurrent retries of one key over two hub processes should append exactly one row and all answer the same eventId', async () => {
    const org = testOrg();
    const key = `race-${randomUUID()}`;
    // One actor: keys are scoped per (org, actor), so a retry is the same principal's (docs/protocol.md).
    const sockets = await Promise.all(Array.from({ length: 6 }, (_, i) => connect(i % 2 ? node2 : node1, org, 'admin-race')));
    const token = await issuer.token(org, 'admin-race');

    // When 10 copies race: 6 over WS (3 per node) and 4 over HTTP (2 per node)
    const answers = await Promise.all([
      ...sockets.map(async (s) => {
        const r = await cmd(s, 'device.reboot', 'devices/d9/commands', { reason: 'race' }, key);
        assert.equal(r.op, 'ok', JSON.stringify(r));
        return { eventId: r.eventId as string, position: r.position as string, duplicate: r.duplicate === true };
      }),
      ...[node1, node2, node1, node2].map(async (n) => {
        const r = await httpCmd(n, token, { type: 'device.reboot', topic: 'devices/d9/commands', data: { reason: 'race' }, key });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        return { eventId: r.body.eventId as string, position: r.body.position as string, duplicate: r.body.duplicate === true };
      }),
    ]);

    // Then one row, one winner, and every answer names it
    const recorded = await byKey(org, key);
    assert.equal(recorded.length, 1);
    assert.equal(new Set(answers.map((a) => `${a.eventId}@${a.position}`)).size, 1, JSON.stringify(answers));
    assert.equal(answers[0].eventId, recorded[0].event_id);
    assert.equal(answers[0].position, recorded[0].global_position);
    assert.equal(answers.filter((a) => !a.duplicate).length, 1, 'exactly one answer is the append itself');
  });

  it('commands - a payload failing its schema should get invalid with the schema message and append nothing', async () => {
    const org = testOrg();
    const admin = await connect(node1, org, 'alice');
    const cases: { type: string; data: unknown; message: RegExp }[] = [
      { type: 'device.reboot', data: { reason: 'x', force: true }, message: /^device\.reboot: data must NOT have additional properties \(force\)$/ },
      { type: 'device.reboot', data: { delaySeconds: -1 }, message: /^device\.reboot: data\/delaySeconds must be >= 0$/ },
      { type: 'device.reboot', data: { delaySeconds: 1.5 }, message: /data\/delaySeconds must be integer/ },
      { type: 'device.reboot', data: { reason: 'r'.repeat(201) }, message: /^device\.reboot: data\/reason must NOT have more than 200 characters$/ },
      { type: 'device.reboot', data: null, message: /data must be object/ },
      { type: 'device.config', data: {}, message: /^device\.config: data must have required property 'settings'$/ },
      { type: 'device.config', data: { settings: 'on' }, message: /data\/settings must be object/ },
      { type: 'fleet.ack', data: {}, message: /must have required property 'commandId'/ },
    ];
    for (const [i, c] of cases.entries()) {
      const r = await cmd(admin, c.type, 'devices/d1/commands', c.data, `bad-${i}`);
      assert.equal(r.op, 'err', `${JSON.stringify(c.data)}: ${JSON.stringify(r)}`);
      assert.equal(r.code, 'invalid');
      assert.match(r.message, c.message);
    }
    // 200 characters exactly is fine (the boundary)
    assert.equal((await cmd(admin, 'device.reboot', 'devices/d1/commands', { reason: 'r'.repeat(200) }, 'edge-200')).op, 'ok');
    // the same over HTTP: 400 with the code and message
    const h = await httpCmd(node1, await issuer.token(org, 'alice'), { type: 'device.reboot', topic: 'devices/d1/commands', data: { delaySeconds: -1 }, key: 'bad-http' });
    assert.equal(h.status, 400);
    assert.deepEqual(h.body, { error: { code: 'invalid', message: 'device.reboot: data/delaySeconds must be >= 0' } });
    assert.deepEqual((await rows(org, `stream_id LIKE 'commands:%'`)).map((r) => r.idempotency_key), [scopedKey('alice', 'edge-200')]);
  });

  it('commands - an unknown type should get unknown_command, and a frame smuggling an org should be invalid', async () => {
    const org = testOrg();
    const admin = await connect(node1, org, 'alice');
    const r = await cmd(admin, 'device.selfdestruct', 'devices/d1/commands', {}, 'u1');
    assert.deepEqual([r.op, r.code], ['err', 'unknown_command']);
    assert.match(r.message, /device\.selfdestruct/);
    const h = await httpCmd(node1, await issuer.token(org, 'alice'), { type: 'nope', topic: 'devices/d1/commands', data: {} });
    assert.deepEqual([h.status, h.body.error.code], [400, 'unknown_command']);
    const other = testOrg();
    const smuggled = await admin.request({ op: 'cmd', type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: 'u2', org: other });
    assert.deepEqual([smuggled.op, smuggled.code], ['err', 'invalid']);
    assert.equal((await rows(org, `stream_id LIKE 'commands:%'`)).length, 0);
    assert.equal((await rows(other)).length, 0);
  });

  it('commands - a device should send fleet.ack for itself only (another device\'s topic is forbidden), and every refusal should be audited as command.denied', async () => {
    const org = testOrg();
    const d1 = await connect(node1, org, 'd1', ['device']);

    // fleet.ack is handled by the fleet service (hub/fleet): granted on the device's own topics, it
    // reaches the command lookup, which knows no command c-1 (the full ack path: hub/fleet/fleet.int.test.ts)
    const allowed = await cmd(d1, 'fleet.ack', 'devices/d1/acks', { commandId: 'c-1', status: 'succeeded' }, 'ack-1');
    assert.deepEqual([allowed.op, allowed.code], ['err', 'not_found'], JSON.stringify(allowed));

    const reboot = await cmd(d1, 'device.reboot', 'devices/d1/commands', {}, 'deny-1');
    const foreign = await cmd(d1, 'fleet.ack', 'devices/d2/acks', { commandId: 'c-1', status: 'succeeded' }, 'deny-2');
    const http = await httpCmd(node2, await issuer.token(org, 'd1', ['device']), { type: 'device.config', topic: 'devices/d1/commands', data: { settings: {} }, key: 'deny-3' });
    for (const r of [reboot, foreign]) assert.deepEqual([r.op, r.code], ['err', 'forbidden'], JSON.stringify(r));
    assert.deepEqual([http.status, http.body.error.code], [403, 'forbidden']);

    for (const [type, topic, transport] of [
      ['device.reboot', 'devices/d1/commands', 'ws'],
      ['fleet.ack', 'devices/d2/acks', 'ws'],
      ['device.config', 'devices/d1/commands', 'http'],
    ]) {
      const ev = await waitAudit(org, 'command.denied', (r) => r.data.type === type && r.data.topic === topic);
      assert.equal(ev.data.transport, transport);
      assert.equal(ev.metadata.actor, 'd1');
      assert.match(ev.metadata.session, UUID);
    }
    assert.equal((await rows(org, `idempotency_key LIKE '%:deny-%'`)).length, 0, 'nothing refused was appended');
  });

  it('commands - an org-B admin command should land in org B only, and org A subscribers should see nothing', async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const watcherA = await connect(node1, orgA, 'watcher');
    const watcherB = await connect(node2, orgB, 'watcher');
    await subscribe(watcherA, '#');
    await subscribe(watcherB, '#');
    const adminB = await connect(node1, orgB, 'mallory');
    const key = `x-${randomUUID()}`;

    // When B's admin commands the same topic name A uses, and even names A in the topic
    const rb = await cmd(adminB, 'device.reboot', 'devices/d1/commands', {}, key);
    // (A's id as a device id is just a segment of B's topic space; A's id as a topic prefix is
    // outside device.reboot's declared topics, `devices/+/commands`, and refused as bad_topic)
    const rb2 = await cmd(adminB, 'device.reboot', `devices/${orgA}/commands`, {}, `${key}-2`);
    const rbPrefixed = await cmd(adminB, 'device.reboot', `${orgA}/devices/d1/commands`, {}, `${key}-4`);
    const hb = await httpCmd(node2, await issuer.token(orgB, 'mallory'), { type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: `${key}-3` });
    assert.equal(rb.op, 'ok');
    assert.equal(rb2.op, 'ok');
    assert.deepEqual([rbPrefixed.op, rbPrefixed.code], ['err', 'bad_topic']);
    assert.equal(hb.status, 200);

    // Then every row is B's, A's streams are untouched, and only B's watcher saw the commands
    const inB = await rows(orgB, `stream_id LIKE 'commands:%'`);
    assert.deepEqual(inB.map((r) => r.org_id), [orgB, orgB, orgB]);
    assert.deepEqual(new Set(inB.map((r) => r.event_id)), new Set([rb.eventId, rb2.eventId, hb.body.eventId]));
    assert.equal((await rows(orgA)).filter((r) => r.stream_id !== 'audit').length, 0);
    await watcherB.waitFor((f) => f.op === 'msg' && f.data?.commandId === hb.body.eventId);

    // Positive control: A's own command does reach A's watcher, and a key is unique per org only
    const adminA = await connect(node2, orgA, 'alice');
    const ra = await cmd(adminA, 'device.reboot', 'devices/d1/commands', {}, key);
    assert.equal(ra.op, 'ok');
    assert.equal(ra.duplicate, undefined, 'the same key in another org is a different command');
    assert.notEqual(ra.eventId, rb.eventId);
    await watcherA.waitFor((f) => f.op === 'msg' && f.data?.commandId === ra.eventId);
    // Barrier: markers in org A from both nodes, published after B's commands were acked.
    await barrierAcross(watcherA, [node1.url, node2.url], await issuer.token(orgA, 'barrier'), 'zz/barrier');
    const seenByA = watcherA.messages().filter((m) => !isBarrier(m)).map((m: Frame) => m.data?.commandId);
    assert.deepEqual(seenByA, [ra.eventId], 'A saw only its own command');
    assert.deepEqual((await rows(orgA, `stream_id LIKE 'commands:%'`)).map((r) => r.event_id), [ra.eventId]);
  });
});
