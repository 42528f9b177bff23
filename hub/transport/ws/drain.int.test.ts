import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import mqtt from 'mqtt';
import { randomUUID } from 'node:crypto';
import { createTestIssuer, type TestIssuer } from '../../testing/issuer.ts';
import { freePort, startHubProcess, testOrg, type HubProcess } from '../../testing/hubProcess.ts';
import { CloseCode } from '../../errors.ts';
import { scopedKey } from '../../commands/commandService.ts';
import { Reason } from '../../mqtt/codes.ts';
import { assertAckedRecorded, commandEventsByKey, CommandWorker, RoamingPublisher, RoamingSocket, waitUntil } from '../../testing/roamingClients.ts';
import { MqttCommandWorker } from '../../testing/roamingMqtt.ts';

/**
 * Rolling restart of two real hub nodes under load (docs/operations.md "Graceful drain"):
 * - WebSocket clients send keyed commands one after another, retry an unanswered one with the same
 *   key, and reconnect to the other node when theirs closes;
 * - MQTT.js clients (5 and 3.1.1) that know both nodes send keyed `$cmd/` commands at QoS 1;
 * - WebSocket subscribers of a history topic resume with `since` wherever they reconnect, while a
 *   publisher keeps publishing to that topic.
 * Node A gets SIGTERM, is restarted on its ports, then node B. Proves: WebSocket clients are told
 * 4000, MQTT 5 clients DISCONNECT 0x8B, 3.1.1 clients a close; each drain exits 0; every client
 * is back on a node; every acknowledged command (WS and MQTT) is in the event store under its key
 * exactly once; a persistent MQTT session is parked by each drain and resumed by the next node;
 * and each history subscriber got every offset once, gap-free, with `recovered: true`.
 */
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/orghub';
const CLIENTS = 6;
const HISTORY_TOPIC = 'chat/r1';

/** A subscriber of a history topic that resumes from the last offset it saw on every reconnection. */
class HistorySubscriber {
  readonly sock: RoamingSocket;
  /** Offsets in arrival order, and the publisher's sequence numbers they carried. */
  readonly offsets: number[] = [];
  readonly seqs = new Set<number>();
  /** Each resume's answer. */
  readonly resumes: { recovered?: boolean; missed?: number }[] = [];
  private last?: { offset: number; epoch: string };

  constructor(name: string, urls: () => string[], token: string) {
    this.sock = new RoamingSocket(name, urls, token, {
      onOpen: async (s) => {
        const since = this.last;
        const a = (await s.request(`sub-${Date.now()}`, { op: 'sub', topic: HISTORY_TOPIC, ...(since ? { since } : {}) })) as Record<string, any> | undefined;
        if (a?.op !== 'ok') throw new Error(`subscribe refused: ${JSON.stringify(a)}`);
        if (since) this.resumes.push({ recovered: a.recovered, missed: a.missed });
        else this.last = { offset: a.offset, epoch: a.epoch };
      },
      onFrame: (f) => {
        if (f.op !== 'msg' || f.topic !== HISTORY_TOPIC) return;
        this.offsets.push(f.offset);
        this.seqs.add(f.data.seq);
        this.last = { offset: f.offset, epoch: f.epoch };
      },
    });
  }
}

describe('ws drain', () => {
  let issuer: TestIssuer;
  const hubs: HubProcess[] = [];
  let pool: pg.Pool;
  const stops: (() => unknown)[] = [];

  before(async () => {
    issuer = await createTestIssuer();
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  });
  after(async () => {
    await Promise.all(stops.map((s) => s()));
    await Promise.all(hubs.map((h) => h.stop('SIGKILL')));
    await pool.end();
  });

  it('drain - a rolling restart of two nodes under WebSocket and MQTT load loses no acked command, every client is back on a node, and history subscribers miss nothing', { timeout: 120_000 }, async (t) => {
    const mqttPorts = [await freePort(), await freePort()];
    const env = (i: number) => ({ ...issuer.env, ORGHUB_DRAIN_TIMEOUT_MS: '8000', ORGHUB_MQTT_PORT: String(mqttPorts[i]), ORGHUB_MQTT_RATE: '100000', ORGHUB_HISTORY_NAMESPACES: 'chat=100000:600' });
    const nodes = await Promise.all([0, 1].map((i) => startHubProcess(env(i), { timeoutMs: 45_000 })));
    hubs.push(...nodes);
    const urls = () => nodes.map((h) => h.wsUrl);
    const org = testOrg('drain');

    const workers: CommandWorker[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const w = new CommandWorker(`w${i}`, urls, await issuer.token(org, `w${i}`));
      stops.push(() => w.stop());
      await w.sock.connect(i % 2);
      workers.push(w);
    }
    // MQTT: a 5 and a 3.1.1 client starting on each node (the server list is tried in turn on reconnect).
    const mqttWorkers: MqttCommandWorker[] = [];
    for (const [i, version] of [[0, 5], [1, 5], [0, 4], [1, 4]] as const) {
      const name = `m${mqttWorkers.length}v${version}`;
      const w = new MqttCommandWorker(name, i === 0 ? mqttPorts : [...mqttPorts].reverse(), await issuer.token(org, name), version);
      stops.push(() => w.stop());
      mqttWorkers.push(w);
    }
    // A persistent MQTT 5 session (no resubscribe by the client): each drain must park it in Redis
    // before the node exits, so that the next node resumes it (session present, subscription kept).
    const sessionsPresent: boolean[] = [];
    const persistent = mqtt.connect({ servers: mqttPorts.map((port) => ({ host: '127.0.0.1', port })), protocolVersion: 5, clientId: `drain-${randomUUID().slice(0, 8)}`, clean: false, properties: { sessionExpiryInterval: 300 }, resubscribe: false, username: 'any', password: await issuer.token(org, 'persistent'), reconnectPeriod: 100 });
    stops.push(() => persistent.endAsync(true));
    persistent.on('error', () => {});
    persistent.on('connect', (ack) => sessionsPresent.push(ack.sessionPresent));
    const persistentGot: string[] = [];
    persistent.on('message', (_t, payload) => persistentGot.push(payload.toString()));
    await waitUntil('persistent MQTT session connected', () => persistent.connected);
    await persistent.subscribeAsync('pers/x', { qos: 1 });
    const historySubs: HistorySubscriber[] = [];
    for (let i = 0; i < 2; i++) {
      const h = new HistorySubscriber(`h${i}`, urls, await issuer.token(org, `h${i}`));
      stops.push(() => h.sock.stop());
      await h.sock.connect(i);
      historySubs.push(h);
    }
    const publisher = new RoamingPublisher('hp', urls, await issuer.token(org, 'hp'), HISTORY_TOPIC);
    stops.push(() => publisher.stop());
    await publisher.sock.connect(0);

    for (const w of workers) w.start();
    for (const w of mqttWorkers) w.start();
    publisher.start();
    const ackedNow = () => workers.reduce((n, w) => n + w.acked.size, 0);
    const mqttAcked = () => mqttWorkers.reduce((n, w) => n + w.acked.size, 0);
    await waitUntil('commands acked on both nodes, over WebSocket and MQTT', () => ackedNow() >= 150 && mqttWorkers.every((w) => w.acked.size >= 10) && publisher.acked.length >= 20, 30_000);
    assert.deepEqual(mqttWorkers.map((w) => w.port).sort(), [mqttPorts[0], mqttPorts[0], mqttPorts[1], mqttPorts[1]].sort(), 'MQTT clients on both nodes');

    for (const victim of [0, 1]) {
      const survivor = 1 - victim;
      const [ws0, mq0, pub0] = [ackedNow(), mqttAcked(), publisher.acked.length];
      const old = nodes[victim]!;
      const t0 = Date.now();
      const exit = await old.stop('SIGTERM');
      t.diagnostic(`node ${victim} drained in ${Date.now() - t0} ms with ${ackedNow() - ws0} WS and ${mqttAcked() - mq0} MQTT commands acked meanwhile`);
      assert.equal(exit, 0, `node ${victim} drained within its deadline:\n${old.output().slice(-2000)}`);
      // Every client is on the surviving node, and keeps getting acks there.
      await waitUntil(`all clients on node ${survivor}`, () =>
        [...workers.map((w) => w.sock), ...historySubs.map((h) => h.sock), publisher.sock].every((s) => s.node === survivor && s.isOpen) && mqttWorkers.every((w) => w.port === mqttPorts[survivor]),
      );
      const [ws1, mq1, pub1] = [ackedNow(), mqttAcked(), publisher.acked.length];
      await waitUntil('commands and history publishes acked after the drain', () => ackedNow() >= ws1 + 80 && mqttAcked() >= mq1 + 20 && publisher.acked.length >= pub1 + 20);
      assert.ok(publisher.acked.length > pub0);
      // The drained node comes back on its ports (a rolling restart).
      nodes[victim] = await startHubProcess({ ...env(victim), ORGHUB_PORT: String(old.port) }, { timeoutMs: 45_000 });
      hubs.push(nodes[victim]!);
    }
    await Promise.all([...workers.map((w) => w.stop()), ...mqttWorkers.map((w) => w.stop()), publisher.stop()]);

    // WebSocket clients were told 4000, nothing else, once per drained node they were on.
    const codes = workers.flatMap((w) => w.sock.closes.slice(0, -1)); // the last close is the client's own
    assert.deepEqual([...new Set(codes)], [CloseCode.shutdown]);
    assert.ok(workers.every((w) => w.sock.closes.length >= 2), 'every client was on the node drained last');
    assert.deepEqual(workers.flatMap((w) => w.unexpected), [], 'only retryable refusals');
    // MQTT 5 clients heard DISCONNECT 0x8B (Server shutting down), and only that; 3.1.1 clients a plain close.
    for (const w of mqttWorkers) {
      if (w.version === 5) {
        assert.ok(w.disconnects.length >= 1, `${w.name} was on the node drained last`);
        assert.deepEqual([...new Set(w.disconnects)], [Reason.serverShuttingDown], w.name);
      } else {
        assert.deepEqual(w.disconnects, [], `${w.name}: no DISCONNECT packet in 3.1.1`);
        assert.ok(w.closes >= 2, `${w.name} was closed by the drain (and by its own end)`);
      }
    }
    t.diagnostic(`${ackedNow()} WS acked (${workers.reduce((n, w) => n + w.retries, 0)} retries, ${workers.reduce((n, w) => n + w.duplicates, 0)} acks lost and recovered by key); ${mqttAcked()} MQTT acked (${mqttWorkers.reduce((n, w) => n + w.retries, 0)} retries)`);

    // Every acked command is in the store exactly once, with the event id its ack named (WS), under its key (MQTT).
    assert.ok(ackedNow() >= 300);
    assert.deepEqual(await assertAckedRecorded(pool, org, workers), []);
    const { byKey } = await commandEventsByKey(pool, org);
    for (const w of mqttWorkers) for (const key of w.acked) assert.ok(byKey.has(scopedKey(w.name, key)), `MQTT ${key} recorded`);

    // History: each subscriber resumed with recovered: true, and saw every offset once, gap-free, with every acked publish.
    const acked = publisher.acked.map((a) => a.seq);
    await waitUntil('history subscribers caught up', () => historySubs.every((h) => acked.every((s) => h.seqs.has(s))), 10_000).catch(() => {
      for (const h of historySubs) assert.deepEqual(acked.filter((s) => !h.seqs.has(s)).slice(0, 20), [], `${h.sock.name} missed history messages`);
    });
    for (const h of historySubs) {
      assert.ok(h.resumes.length >= 1, `${h.sock.name} resumed at least once`);
      assert.ok(h.resumes.every((r) => r.recovered === true), `${h.sock.name}: ${JSON.stringify(h.resumes)}`);
      const first = h.offsets[0]!;
      assert.deepEqual(h.offsets, h.offsets.map((_, i) => first + i), `${h.sock.name}: offsets once each, in order, no gap`);
    }
    // The persistent session was parked by each drain and resumed by the next node: session present
    // on every reconnection, and its subscription (never sent again) still delivers.
    assert.ok(sessionsPresent.length >= 3, `the persistent session reconnected after both drains: ${JSON.stringify(sessionsPresent)}`);
    assert.deepEqual(sessionsPresent, [false, ...sessionsPresent.slice(1).map(() => true)], 'session present after every drain');
    const probe = new RoamingPublisher('probe', urls, await issuer.token(org, 'probe'), 'pers/x');
    stops.push(() => probe.stop());
    await probe.sock.connect(0);
    assert.equal((await probe.sock.request('probe-1', { op: 'pub', topic: 'pers/x', data: 'after-restarts' }))?.op, 'ok');
    await waitUntil('the resumed subscription delivers', () => persistentGot.includes('"after-restarts"'), 10_000);
    t.diagnostic(`history: ${acked.length} publishes acked; resumes ${historySubs.map((h) => JSON.stringify(h.resumes)).join(' ')}`);
  });
});
