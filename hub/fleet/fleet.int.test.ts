import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../testing/hubProcess.ts';
import { TestClient, type Frame } from '../testing/wsClient.ts';
import { connect as mqttConnect } from '../mqtt/mqttTestKit.ts';
import { connectNats } from '../testing/natsClient.ts';
import { createTestDatabase, startProjector, type ProjectorProcess, type TestDatabase } from '../../projections/testing.ts';

/**
 * Fleet commands end to end: two real hub processes (node 1 with the MQTT bridge), a real
 * projector, NATS, Postgres and WebSocket/MQTT clients; the events table is read directly as the
 * projector role, the read models through the query routes. The suite has a database of its own
 * (projections are global per database). Redelivery runs every 400 ms here (ORGHUB_FLEET_RETRY_MS).
 */
const RETRY_MS = 400;

interface Row {
  stream_id: string;
  type: string;
  data: any;
  metadata: any;
}

/** Polls `fn` until it returns a value that is not undefined/false; fails after `ms`. */
async function until<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, ms = 8000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('fleet', () => {
  let issuer: TestIssuer;
  let mqttUrl: string;
  let node1: HubProcess;
  let node2: HubProcess;
  let pool: pg.Pool;
  let db: TestDatabase;
  let projector: ProjectorProcess;
  const clients: TestClient[] = [];
  const closers: (() => Promise<unknown>)[] = [];

  const events = async (org: string, where = 'true', params: unknown[] = []): Promise<Row[]> => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN; SET LOCAL ROLE orghub_projector');
      return (await c.query<Row>(`SELECT stream_id, type, data, metadata FROM events WHERE org_id = $1 AND (${where}) ORDER BY global_position`, [org, ...params])).rows;
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  };
  const stepsOf = async (org: string, commandId: string) => (await events(org, `type LIKE 'fleet.command.%' AND data->>'commandId' = $2`, [commandId])).map((r) => r.type.slice('fleet.command.'.length));

  const http = async (hub: HubProcess, method: string, path: string, token: string, body?: unknown) => {
    const r = await fetch(`${hub.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as any };
  };
  const issue = async (hub: HubProcess, org: string, device: string, body: unknown = { type: 'reboot', data: { reason: 'test' } }) => {
    const r = await http(hub, 'POST', `/v1/devices/${device}/commands`, await issuer.token(org, 'admin-1'), body);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.commandId as string;
  };
  const ws = async (hub: HubProcess, org: string, sub: string, roles = ['device']) => {
    const c = await TestClient.connect(hub.wsUrl, await issuer.token(org, sub, roles));
    clients.push(c);
    return c;
  };
  const commandsOf = (c: TestClient, commandId: string) => c.frames.filter((f) => f.op === 'msg' && f.data?.commandId === commandId);
  const ack = (c: TestClient, device: string, commandId: string, status = 'succeeded', details?: string) =>
    c.request({ op: 'cmd', type: 'fleet.ack', topic: `$commands/${device}`, data: details === undefined ? { commandId, status } : { commandId, status, details } });

  before(async () => {
    issuer = await createTestIssuer();
    db = await createTestDatabase('fleet');
    const DATABASE_URL = db.url;
    projector = startProjector(DATABASE_URL);
    const env = { ...issuer.env, DATABASE_URL, ORGHUB_FLEET_RETRY_MS: String(RETRY_MS) };
    // One at a time, with a generous deadline: the development machine is shared and often busy.
    const mqttPort = await freePort();
    mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
    node1 = await startHubProcess({ ...env, ORGHUB_MQTT_PORT: String(mqttPort), ORGHUB_MQTT_RATE: '100000' }, { timeoutMs: 45_000 });
    node2 = await startHubProcess(env, { timeoutMs: 45_000 });
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
  });

  after(async () => {
    for (const c of clients) await c.close();
    for (const c of closers) await c().catch(() => {});
    await Promise.all([node1?.stop(), node2?.stop(), projector?.stop()]);
    await pool?.end();
    await db?.drop();
  });

  /** Polls a read-model route until `pred` holds for its body. */
  const readUntil = async (hub: HubProcess, org: string, path: string, pred: (body: any) => boolean, what: string) =>
    until(async () => {
      const r = await http(hub, 'GET', path, await issuer.token(org, 'admin-1'));
      return r.status === 200 && pred(r.body) ? r.body : undefined;
    }, 15_000, what);

  it('fleet - a command issued while the device is offline should be delivered when it connects and subscribes, over WebSocket, and its ack should record succeeded', async () => {
    // Given an offline device and a command issued on node 1
    const org = testOrg();
    const commandId = await issue(node1, org, 'd1', { type: 'lock', data: { message: 'lost' } });
    assert.deepEqual(await stepsOf(org, commandId), ['issued']);

    // When the device connects to node 2 and subscribes to its command topic
    const d1 = await ws(node2, org, 'd1');
    const ok = await d1.request({ op: 'sub', topic: '$commands/d1' });
    assert.equal(ok.op, 'ok', JSON.stringify(ok));

    // Then it gets the command, and the delivery is recorded
    const msg = await d1.waitFor((f) => f.op === 'msg' && f.data?.commandId === commandId);
    assert.equal(msg.topic, '$commands/d1');
    assert.deepEqual([msg.data.type, msg.data.data, msg.data.attempt], ['lock', { message: 'lost' }, 1]);
    assert.equal(typeof msg.offset, 'number');
    await until(async () => (await stepsOf(org, commandId)).includes('delivered'), 5000, 'delivered event');

    // And its ack is recorded as succeeded, with the details
    const a = await ack(d1, 'd1', commandId, 'succeeded', 'locked at 12:00');
    assert.equal(a.op, 'ok', JSON.stringify(a));
    assert.deepEqual(await stepsOf(org, commandId), ['issued', 'delivered', 'acked']);
    const [acked] = await events(org, `type = 'fleet.command.acked'`);
    assert.deepEqual([acked.data.status, acked.data.details, acked.metadata.actor], ['succeeded', 'locked at 12:00', 'd1']);
  });

  it('fleet - over MQTT QoS 1 a device should get a command queued while offline after SUBSCRIBE, and ack it on $cmd/$commands/<device>', async () => {
    const org = testOrg();
    const commandId = await issue(node2, org, 'm1', { type: 'config', data: { settings: { rate: 5 } } });
    const c = await mqttConnect(mqttUrl, await issuer.token(org, 'm1', ['device']));
    closers.push(() => c.client.endAsync(true));
    const granted = await c.client.subscribeAsync('$commands/m1', { qos: 1 });
    assert.equal(granted[0].qos, 1);
    const [m] = await c.waitFor(1, (x) => x.topic === '$commands/m1');
    assert.equal(m.qos, 1);
    const body = JSON.parse(m.payload.toString());
    assert.deepEqual([body.commandId, body.type, body.data], [commandId, 'config', { settings: { rate: 5 } }]);

    await c.client.publishAsync('$cmd/$commands/m1', JSON.stringify({ type: 'fleet.ack', data: { commandId, status: 'failed', details: 'unsupported' } }), { qos: 1 });
    await until(async () => (await stepsOf(org, commandId)).includes('acked'), 5000, 'acked over MQTT');
    const [acked] = await events(org, `type = 'fleet.command.acked'`);
    assert.deepEqual([acked.data.status, acked.data.transport], ['failed', 'mqtt']);
  });

  it('fleet - an online device should get a command at once, again on the retry interval until it acks, and a duplicate ack should be harmless', async () => {
    const org = testOrg();
    const d2 = await ws(node2, org, 'd2');
    assert.equal((await d2.request({ op: 'sub', topic: '$commands/d2' })).op, 'ok');

    const commandId = await issue(node1, org, 'd2');
    await d2.waitFor((f) => f.op === 'msg' && f.data?.commandId === commandId && f.data.attempt === 1);
    // Not acked: redelivered (the same command id, a higher attempt)
    await d2.waitFor((f) => f.op === 'msg' && f.data?.commandId === commandId && f.data.attempt === 2, 5000);

    const first = await ack(d2, 'd2', commandId);
    assert.equal(first.op, 'ok');
    assert.equal(first.duplicate, undefined);
    const again = await ack(d2, 'd2', commandId);
    assert.deepEqual([again.op, again.eventId, again.duplicate], ['ok', first.eventId, true]);
    // A later ack with another outcome is a duplicate too: the first ack stands, nothing is appended
    const other = await ack(d2, 'd2', commandId, 'rejected');
    assert.deepEqual([other.op, other.eventId, other.duplicate], ['ok', first.eventId, true]);
    const acked = await events(org, `type = 'fleet.command.acked'`);
    assert.deepEqual(acked.map((r) => r.data.status), ['succeeded']);

    // After the ack no more redeliveries: wait three retry intervals past the last one seen
    const seen = commandsOf(d2, commandId).length;
    const quiet = Date.now() + RETRY_MS * 3;
    await until(() => Date.now() > quiet, RETRY_MS * 4);
    assert.equal(commandsOf(d2, commandId).length, seen);
  });

  it('fleet - a command should move to expired at its expiry, and one cancelled should not be delivered; an ack of either is a conflict', async () => {
    const org = testOrg();
    const expiring = await issue(node1, org, 'd3', { type: 'unlock', data: {}, expiresIn: 1 });
    const cancelled = await issue(node1, org, 'd3', { type: 'wipe', data: { keepEnrollment: true } });
    const admin = await issuer.token(org, 'admin-1');

    const del = await http(node2, 'DELETE', `/v1/devices/d3/commands/${cancelled}`, admin);
    assert.deepEqual([del.status, del.body], [200, { commandId: cancelled, status: 'cancelled' }]);
    const again = await http(node2, 'DELETE', `/v1/devices/d3/commands/${cancelled}`, admin);
    assert.deepEqual([again.status, again.body.error.code], [409, 'conflict']);

    await until(async () => (await stepsOf(org, expiring)).includes('expired'), 6000, 'expired event');
    // A live command for the same device is the positive control: it is delivered, the others are not
    const live = await issue(node1, org, 'd3');
    const d3 = await ws(node2, org, 'd3');
    assert.equal((await d3.request({ op: 'sub', topic: '$commands/d3' })).op, 'ok');
    await d3.waitFor((f) => f.op === 'msg' && f.data?.commandId === live);
    assert.equal(commandsOf(d3, expiring).length + commandsOf(d3, cancelled).length, 0);

    for (const id of [expiring, cancelled]) {
      const r = await ack(d3, 'd3', id);
      assert.deepEqual([r.op, r.code], ['err', 'conflict'], JSON.stringify(r));
    }
    assert.deepEqual(await stepsOf(org, cancelled), ['issued', 'cancelled']);
    assert.deepEqual(await stepsOf(org, expiring), ['issued', 'expired']);

    // The read model agrees: GET /v1/devices/d3/commands, newest first
    const statuses = (b: any) => Object.fromEntries(b.items.map((c: any) => [c.id, c.status]));
    const listed = await readUntil(node1, org, '/v1/devices/d3/commands', (b) => {
      const st = statuses(b);
      return st[expiring] === 'expired' && st[cancelled] === 'cancelled' && st[live] === 'delivered';
    }, 'device_commands statuses');
    const row = listed.items.find((c: any) => c.id === live);
    assert.deepEqual([row.type, row.topic, row.deviceId, row.issuedBy], ['reboot', '$commands/d3', 'd3', 'admin-1']);
    assert.ok(row.expiresAt && row.deliveredAt);
    assert.equal((await ack(d3, 'd3', live, 'rejected', 'busy')).op, 'ok');
    await readUntil(node2, org, '/v1/devices/d3/commands?status=rejected', (b) => b.items.length === 1 && b.items[0].id === live && b.items[0].details === 'busy', 'rejected in the read model');
  });

  it("fleet - an ack for another device's command should be refused, and another org should neither see, receive, ack nor cancel a command", async () => {
    const orgA = testOrg('a');
    const orgB = testOrg('b');
    const cmdA = await issue(node1, orgA, 'd1');
    const d2 = await ws(node1, orgA, 'd2');
    const notMine = await ack(d2, 'd2', cmdA);
    assert.deepEqual([notMine.op, notMine.code], ['err', 'not_found']);
    const foreignTopic = await ack(d2, 'd1', cmdA);
    assert.deepEqual([foreignTopic.op, foreignTopic.code], ['err', 'forbidden']);

    // Org B: a device with the same id, and an admin
    const bDevice = await ws(node2, orgB, 'd1');
    assert.equal((await bDevice.request({ op: 'sub', topic: '$commands/d1' })).op, 'ok');
    const bAck = await ack(bDevice, 'd1', cmdA);
    assert.deepEqual([bAck.op, bAck.code], ['err', 'not_found']);
    const bCancel = await http(node2, 'DELETE', `/v1/devices/d1/commands/${cmdA}`, await issuer.token(orgB, 'admin-b'));
    assert.deepEqual([bCancel.status, bCancel.body.error.code], [404, 'not_found']);
    // A device may not issue or cancel at all
    const byDevice = await http(node1, 'POST', '/v1/devices/d1/commands', await issuer.token(orgA, 'd2', ['device']), { type: 'wipe', data: {} });
    assert.deepEqual([byDevice.status, byDevice.body.error.code], [403, 'forbidden']);

    // Positive controls: org A's own d1 receives and acks it
    const aDevice = await ws(node2, orgA, 'd1');
    assert.equal((await aDevice.request({ op: 'sub', topic: '$commands/d1' })).op, 'ok');
    await aDevice.waitFor((f) => f.op === 'msg' && f.data?.commandId === cmdA);
    assert.equal((await ack(aDevice, 'd1', cmdA)).op, 'ok');
    assert.equal(commandsOf(bDevice, cmdA).length, 0);
    assert.equal((await events(orgB, `stream_id LIKE 'fleet:%'`)).length, 0);
    const refused = await until(async () => (await events(orgA, `type = 'audit.fleet.ack_refused'`)).length >= 1 || undefined, 5000, 'ack_refused audit');
    assert.ok(refused);
    // Read models: org A lists the command (positive control), org B lists nothing for the same device id
    await readUntil(node1, orgA, '/v1/devices/d1/commands', (b) => b.items.some((c: any) => c.id === cmdA && c.status === 'succeeded'), 'org A read model');
    const bList = await http(node1, 'GET', '/v1/devices/d1/commands', await issuer.token(orgB, 'admin-b'));
    assert.deepEqual([bList.status, bList.body.items], [200, []]);
    const byDeviceRead = await http(node1, 'GET', '/v1/devices/d1/commands', await issuer.token(orgA, 'd2', ['device']));
    assert.deepEqual([byDeviceRead.status, byDeviceRead.body.error.code], [403, 'forbidden']);
  });

  it('fleet - no publish (WebSocket, HTTP, MQTT, raw NATS) and no generic command may imitate a command on a delivery topic', async () => {
    const org = testOrg();
    const d5 = await ws(node2, org, 'd5');
    assert.equal((await d5.request({ op: 'sub', topic: '$commands/d5' })).op, 'ok');
    const admin = await ws(node1, org, 'root', ['admin']);
    const forged = { commandId: 'forged-1', type: 'wipe', data: {} };

    for (const c of [d5, admin]) {
      const r = await c.request({ op: 'pub', topic: '$commands/d5', data: forged });
      assert.deepEqual([r.op, r.code], ['err', 'forbidden']);
    }
    const h = await http(node1, 'POST', '/v1/publish', await issuer.token(org, 'svc', ['service', 'admin']), { topic: '$commands/d5', data: forged });
    assert.deepEqual([h.status, h.body.error.code], [403, 'forbidden']);
    const generic = await admin.request({ op: 'cmd', type: 'device.reboot', topic: '$commands/d5', data: {} });
    assert.deepEqual([generic.op, generic.code], ['err', 'forbidden']);
    // An explicit acl grant does not open it either
    const withAcl = await TestClient.connect(node1.wsUrl, await issuer.token(org, 'x', [], { acl: { pub: ['$commands/d5'], sub: [] } }));
    clients.push(withAcl);
    assert.equal((await withAcl.request({ op: 'pub', topic: '$commands/d5', data: forged })).code, 'forbidden');
    const mq = await mqttConnect(mqttUrl, await issuer.token(org, 'd5', ['device']), { protocolVersion: 5 });
    closers.push(() => mq.client.endAsync(true));
    const code = await mq.client.publishAsync('$commands/d5', JSON.stringify(forged), { qos: 1 }).then(
      () => 0,
      (e: { code?: number }) => e.code,
    );
    assert.equal(code, 0x87, 'PUBACK Not authorized');
    const nc = await connectNats();
    closers.push(() => nc.close());
    nc.publish(`hub.${org}.$commands.d5`, JSON.stringify(forged));
    await nc.flush();

    // Positive control: a real command arrives after all of that, and nothing forged ever did
    const real = await issue(node1, org, 'd5');
    await d5.waitFor((f: Frame) => f.op === 'msg' && f.data?.commandId === real);
    assert.equal(d5.frames.filter((f) => f.op === 'msg' && f.data?.commandId === 'forged-1').length, 0);
    const denied = await until(async () => {
      const rows = await events(org, `type = 'audit.publish.denied'`);
      return rows.length >= 4 ? rows : undefined;
    }, 5000, 'publish.denied audits');
    assert.ok(denied.every((r) => r.data.topic === '$commands/d5'));
  });

  it('fleet - an idempotency key is scoped to (org, actor) and a retry must repeat its request', async () => {
    const org = testOrg();
    const admin1 = await issuer.token(org, 'admin-1');
    const first = await http(node1, 'POST', '/v1/devices/k1/commands', admin1, { type: 'reboot', data: {}, key: 'once' });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    // Positive control: the same request again is the original
    const again = await http(node1, 'POST', '/v1/devices/k1/commands', admin1, { type: 'reboot', data: {}, key: 'once' });
    assert.deepEqual([again.status, again.body.commandId, again.body.duplicate], [202, first.body.commandId, true]);
    // The same key for another request: conflict, and nothing of the original in the answer
    const other = await http(node1, 'POST', '/v1/devices/k1/commands', admin1, { type: 'lock', data: {}, key: 'once' });
    assert.equal(other.status, 409);
    assert.equal(other.body.error.code, 'conflict');
    assert.ok(!JSON.stringify(other.body).includes(first.body.commandId));
    // Another admin's equal key is an unrelated command
    const admin2 = await http(node1, 'POST', '/v1/devices/k1/commands', await issuer.token(org, 'admin-2'), { type: 'reboot', data: {}, key: 'once' });
    assert.equal(admin2.status, 202);
    assert.notEqual(admin2.body.commandId, first.body.commandId);
    assert.equal(admin2.body.duplicate, undefined);
  });

  it('fleet - a bulk command to 100 devices should create one command per device, deliver them, summarise them per status, and be unknown to another org', async () => {
    const org = testOrg();
    const ids = Array.from({ length: 100 }, (_, i) => `b${i}`);
    const admin = await issuer.token(org, 'admin-1');
    const r = await http(node1, 'POST', '/v1/fleet/commands', admin, { type: 'reboot', data: {}, selector: { devices: ids }, key: 'bulk-1' });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.commands.length, 100);
    assert.deepEqual(r.body.commands.map((c: any) => c.deviceId), ids);
    assert.equal((await events(org, `type = 'fleet.command.issued'`)).length, 100);
    // The same key again: the same answer, nothing new
    const retry = await http(node2, 'POST', '/v1/fleet/commands', admin, { type: 'reboot', data: {}, selector: { devices: ids }, key: 'bulk-1' });
    assert.deepEqual([retry.status, retry.body.fleetId, retry.body.duplicate], [202, r.body.fleetId, true]);
    assert.equal((await events(org, `type = 'fleet.command.issued'`)).length, 100);

    const b7 = await ws(node2, org, 'b7');
    assert.equal((await b7.request({ op: 'sub', topic: '$commands/b7' })).op, 'ok');
    const got = await b7.waitFor((f) => f.op === 'msg' && f.topic === '$commands/b7');
    assert.equal(got.data.commandId, r.body.commands[7].commandId);
    const b8 = await ws(node1, org, 'b8');
    assert.equal((await b8.request({ op: 'sub', topic: '$commands/b8' })).op, 'ok');
    const got8 = await b8.waitFor((f) => f.op === 'msg' && f.topic === '$commands/b8');
    assert.equal((await ack(b7, 'b7', got.data.commandId)).op, 'ok');
    assert.equal((await ack(b8, 'b8', got8.data.commandId, 'failed')).op, 'ok');
    const cancelled = await http(node1, 'DELETE', `/v1/devices/b9/commands/${r.body.commands[9].commandId}`, admin);
    assert.equal(cancelled.status, 200);

    // The per-status summary from the read model
    const summary = await readUntil(node2, org, `/v1/fleet/commands/${r.body.fleetId}`, (b) => b.byStatus?.succeeded === 1 && b.byStatus.failed === 1 && b.byStatus.cancelled === 1, 'bulk summary');
    assert.deepEqual(summary.byStatus, { queued: 97, delivered: 0, succeeded: 1, failed: 1, rejected: 0, expired: 0, cancelled: 1 });
    assert.deepEqual([summary.fleetId, summary.total, summary.type, summary.issuedBy], [r.body.fleetId, 100, 'reboot', 'admin-1']);
    const otherOrg = await http(node2, 'GET', `/v1/fleet/commands/${r.body.fleetId}`, await issuer.token(testOrg(), 'admin-1'));
    assert.deepEqual([otherOrg.status, otherOrg.body.error.code], [404, 'not_found']);

    // The selector {"all": true}: every device the devices read model knows in this org (b7 and b8 connected)
    await readUntil(node1, org, '/v1/devices', (b) => b.items.length >= 2, 'devices read model');
    const all = await http(node1, 'POST', '/v1/fleet/commands', admin, { type: 'lock', data: {}, selector: { all: true } });
    assert.equal(all.status, 202, JSON.stringify(all.body));
    assert.deepEqual(all.body.commands.map((c: any) => c.deviceId).sort(), ['b7', 'b8']);

    const tooMany = await http(node1, 'POST', '/v1/fleet/commands', admin, { type: 'reboot', data: {}, selector: { devices: ['a', 'a'] } });
    assert.deepEqual([tooMany.status, tooMany.body.error.code], [400, 'invalid']);
    const badType = await http(node1, 'POST', '/v1/devices/d1/commands', admin, { type: 'selfdestruct', data: {} });
    assert.deepEqual([badType.status, badType.body.error.code], [400, 'unknown_command']);
    const badData = await http(node1, 'POST', '/v1/devices/d1/commands', admin, { type: 'reboot', data: { delaySeconds: -1 } });
    assert.deepEqual([badData.status, badData.body.error.code], [400, 'invalid']);
  });
});
