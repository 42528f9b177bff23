import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IPubackPacket, IPublishPacket } from 'mqtt-packet';
import { Redis } from 'ioredis';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { connect, RawClient, sleep, startMqttHub, until, type Collector, type MqttHub } from './mqttTestKit.ts';
import { retainedBytesKey, retainedIndexKey, retainedKey } from './retainedRedis.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Messages and their size: 24 MiB in all, far more than socket buffers and ORGHUB_MAX_BACKPRESSURE hold. */
const N = 1500;
const SIZE = 16 * 1024;
const payloadOf = (i: number) => Buffer.concat([Buffer.from(`${String(i).padStart(6, '0')}|`), Buffer.alloc(SIZE - 7, i % 251)]);

function metric(text: string, name: string): number {
  const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

/**
 * Backpressure on both directions of an MQTT connection, against real Redis and a hub process:
 * retained messages are paged out only as fast as the subscriber reads, and a publisher that
 * floods faster than its packets are handled has its socket paused instead of buffered.
 */
describe('mqtt backpressure', () => {
  let issuer: TestIssuer;
  let h: MqttHub;
  let redis: Redis;
  const orgs: string[] = [];
  const raws: RawClient[] = [];
  const open: Collector[] = [];
  const metrics = async () => (await fetch(`${h.hub.url}/metrics`)).text();
  const raw = async (org: string, sub: string) => {
    const r = await RawClient.open(h.mqttPort, 4);
    raws.push(r);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: `raw-${sub}-${org}`, clean: true, keepalive: 120, username: 'x', password: Buffer.from(await issuer.token(org, sub)) } as never);
    await r.waitFor((p) => p.cmd === 'connack');
    return r;
  };
  /** Sends N retained QoS 1 PUBLISHes at once; resolves with their PUBACKs once all arrived. */
  const flood = async (r: RawClient, prefix: string) => {
    const frames: Buffer[] = [];
    for (let i = 0; i < N; i++) frames.push(RawClient.encode({ cmd: 'publish', topic: `${prefix}/${i}`, payload: payloadOf(i), qos: 1, retain: true, dup: false, messageId: i + 1 }));
    r.socket.write(Buffer.concat(frames));
    const acks = () => r.packets.filter((p) => p.cmd === 'puback') as IPubackPacket[];
    assert.ok(await until(() => acks().length >= N, 60_000), `PUBACKs: ${acks().length} of ${N}`);
    return acks();
  };

  before(async () => {
    issuer = await createTestIssuer();
    h = await startMqttHub(issuer);
    redis = new Redis(REDIS_URL);
  });
  after(async () => {
    for (const c of open) c.client.end(true);
    for (const r of raws) r.socket.destroy();
    await h?.hub.stop();
    for (const org of orgs) await redis.del(retainedKey(org), retainedIndexKey(org), retainedBytesKey(org));
    redis?.disconnect();
  });

  it('flood - a publisher faster than its packets are handled has its socket paused (queue bounded by bytes) and every accepted message is delivered, in order', async () => {
    const org = testOrg();
    orgs.push(org);
    const watcher = await connect(h.tcpUrl, await issuer.token(org, 'watcher'));
    open.push(watcher);
    await watcher.client.subscribeAsync('flood/#', { qos: 0 });
    const before = await metrics();
    const pausesBefore = metric(before, 'orghub_mqtt_socket_pauses_total');
    assert.equal(metric(before, 'orghub_mqtt_inbound_queued_bytes'), 0);

    // Sample the node-wide queue gauge while 24 MiB of retained PUBLISHes (each waits for Redis) arrive at once.
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, metric(await metrics(), 'orghub_mqtt_inbound_queued_bytes'));
        await sleep(5);
      }
    })();
    const r = await raw(org, 'flooder');
    let acks: IPubackPacket[];
    try {
      acks = await flood(r, 'flood');
    } finally {
      sampling = false;
      await sampler;
    }

    // Every PUBLISH was accepted, acked in order, and none was refused.
    assert.deepEqual(acks.map((a) => a.messageId), Array.from({ length: N }, (_, i) => i + 1));
    assert.ok(r.socket.readyState === 'open', 'the flooder was not disconnected');
    const after = await metrics();
    assert.ok(metric(after, 'orghub_mqtt_socket_pauses_total') > pausesBefore, 'the socket was paused at least once');
    assert.ok(peak > 0, `the queue was seen busy (peak ${peak} bytes)`);
    // 4 MiB pause threshold, plus at most one socket read parsed after it; without the pause it would reach 16 MiB (then disconnect).
    assert.ok(peak <= 5 * 1024 * 1024, `queued bytes stayed bounded: peak ${peak} of ${N * SIZE} sent`);
    assert.ok(await until(async () => metric(await metrics(), 'orghub_mqtt_inbound_queued_bytes') === 0, 5000), 'the queue drained');

    // No accepted message was lost: the watcher got all of them live, in order, intact.
    const got = await watcher.waitFor(N, (m) => m.topic.startsWith('flood/'), 30_000);
    assert.deepEqual(got.map((m) => m.topic), Array.from({ length: N }, (_, i) => `flood/${i}`));
    assert.ok(got.every((m, i) => m.payload.equals(payloadOf(i))), 'payloads intact');
  });

  it('retained paging - a subscriber that does not read gets retained messages a page at a time; once it reads it gets all of them', async () => {
    const org = testOrg();
    orgs.push(org);
    const keeper = await raw(org, 'keeper');
    const acks = await flood(keeper, 'ret');
    assert.ok(acks.every((a) => (a.reasonCode ?? 0) === 0), 'all retained');

    const sentBefore = metric(await metrics(), 'orghub_mqtt_retained_sent_total');
    const sub = await raw(org, 'stalled');
    // QoS 0, so that only the socket (not the QoS 1 in-flight window) holds the pages back.
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ret/#', qos: 0 }] });
    sub.socket.pause();

    // The hub sends a few pages, then waits for the socket: the count stops rising well short of N.
    let last = -1;
    let stableSince = Date.now();
    const plateaued = await until(async () => {
      const v = metric(await metrics(), 'orghub_mqtt_retained_sent_total') - sentBefore;
      if (v !== last) {
        last = v;
        stableSince = Date.now();
      }
      return v > 0 && Date.now() - stableSince >= 1500;
    }, 30_000);
    assert.ok(plateaued, `retained sends never settled (last ${last})`);
    assert.ok(last > 0 && last % 100 === 0, `whole pages were sent: ${last}`);
    assert.ok(last <= N / 2, `a stalled subscriber is sent at most half of ${N} retained messages (24 MiB); got ${last}`);
    assert.equal(sub.socket.readyState, 'open', 'the stalled subscriber is waited for, not cut');

    // Positive control: once it reads, every retained message arrives, each once, with RETAIN 1.
    sub.socket.resume();
    const pubs = () => sub.packets.filter((p) => p.cmd === 'publish') as IPublishPacket[];
    assert.ok(await until(() => pubs().length >= N, 60_000), `received ${pubs().length} of ${N}`);
    const got = pubs();
    assert.equal(new Set(got.map((p) => p.topic)).size, N, 'each retained topic once');
    assert.ok(got.every((p) => p.retain), 'RETAIN 1 on every retained message');
    assert.ok(got.every((p) => { const i = Number(p.topic.split('/')[1]); return Buffer.from(p.payload).equals(payloadOf(i)); }), 'payloads intact');
    assert.equal(metric(await metrics(), 'orghub_mqtt_retained_sent_total') - sentBefore, N);
  });
});
