import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IDisconnectPacket, IPubcompPacket, IPublishPacket } from 'mqtt-packet';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { testOrg } from '../testing/hubProcess.ts';
import { connect, RawClient, startMqttHub, type Collector, type MqttHub } from './mqttTestKit.ts';

/** Per-connection limits, against a hub started with small ones. */
describe('mqtt limits', () => {
  let issuer: TestIssuer;
  let h: MqttHub;
  const open: Collector[] = [];
  const raws: RawClient[] = [];
  const raw = async (org: string, sub: string, version: 4 | 5, extra: Record<string, unknown> = {}) => {
    const r = await RawClient.open(h.mqttPort, version);
    raws.push(r);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: `raw-${sub}`, clean: true, keepalive: 60, username: 'x', password: Buffer.from(await issuer.token(org, sub)), ...extra } as never, version);
    await r.waitFor((p) => p.cmd === 'connack');
    return r;
  };

  before(async () => {
    issuer = await createTestIssuer();
    h = await startMqttHub(issuer, { ORGHUB_MQTT_MAX_PACKET: '4096', ORGHUB_MQTT_MAX_INFLIGHT: '5', ORGHUB_MQTT_RATE: '20', ORGHUB_MQTT_MAX_RETAINED: '3' });
  });
  after(async () => {
    for (const c of open) c.client.end(true);
    for (const r of raws) r.socket.destroy();
    await h?.hub.stop();
  });

  it('qos 2 - PUBREL for an open exchange gets PUBCOMP 0x00; for an unknown id, 0x92 in MQTT 5 and a plain PUBCOMP in 3.1.1', async () => {
    const r5 = await raw(testOrg(), 'q2v5', 5);
    r5.send({ cmd: 'publish', topic: 'q2/x', payload: Buffer.from('once'), qos: 2, messageId: 7, retain: false, dup: false }, 5);
    await r5.waitFor((p) => p.cmd === 'pubrec' && p.messageId === 7);
    r5.send({ cmd: 'pubrel', messageId: 7 }, 5);
    const done = (await r5.waitFor((p) => p.cmd === 'pubcomp' && p.messageId === 7)) as IPubcompPacket;
    assert.equal(done.reasonCode ?? 0, 0x00);
    r5.send({ cmd: 'pubrel', messageId: 7 }, 5);
    await r5.waitFor(() => r5.packets.filter((p) => p.cmd === 'pubcomp').length === 2);
    const again = r5.packets.filter((p) => p.cmd === 'pubcomp')[1] as IPubcompPacket;
    assert.equal(again.messageId, 7);
    assert.equal(again.reasonCode, 0x92, 'the exchange was already complete');

    const r4 = await raw(testOrg(), 'q2v4', 4);
    r4.send({ cmd: 'pubrel', messageId: 9 });
    const plain = (await r4.waitFor((p) => p.cmd === 'pubcomp')) as IPubcompPacket;
    assert.equal(plain.messageId, 9);
    assert.equal(plain.reasonCode, undefined);
  });

  it('packet size - a PUBLISH over ORGHUB_MQTT_MAX_PACKET gets DISCONNECT 0x95 and the socket closes', async () => {
    const r = await raw(testOrg(), 'big', 5);
    r.send({ cmd: 'publish', topic: 'big/x', payload: Buffer.alloc(8192, 7), qos: 0, retain: false, dup: false }, 5);
    const d = (await r.waitFor((p) => p.cmd === 'disconnect')) as IDisconnectPacket;
    assert.equal(d.reasonCode, 0x95);
    await r.closed;
  });

  it('keepalive - a silent client is closed after 1.5 × keepalive and its will is published', async () => {
    const org = testOrg();
    const watcher = await connect(h.tcpUrl, await issuer.token(org, 'w'));
    open.push(watcher);
    await watcher.client.subscribeAsync('lwt/#');
    const t0 = Date.now();
    const r = await raw(org, 'silent', 4, { keepalive: 1, will: { topic: 'lwt/silent', payload: Buffer.from('bye'), qos: 0, retain: false } });
    await r.closed;
    const took = Date.now() - t0;
    assert.ok(took >= 1400 && took < 4000, `closed after ${took} ms`);
    const [m] = await watcher.waitFor(1);
    assert.equal(m.payload.toString(), 'bye');
  });

  it('retained - an org holds at most ORGHUB_MQTT_MAX_RETAINED topics; past it PUBACK 0x97, other orgs unaffected', async () => {
    const [orgA, orgB] = [testOrg(), testOrg()];
    const r = await raw(orgA, 'keeper', 5);
    let id = 0;
    const retain = async (client: RawClient, topic: string, payload: string) => {
      const messageId = ++id;
      client.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: true, dup: false, messageId }, 5);
      const ack = (await client.waitFor((p) => p.cmd === 'puback' && (p as { messageId?: number }).messageId === messageId)) as { reasonCode?: number };
      return ack.reasonCode ?? 0;
    };
    for (const t of ['ret/1', 'ret/2', 'ret/3']) assert.equal(await retain(r, t, t), 0);
    assert.equal(await retain(r, 'ret/4', 'x'), 0x97, 'a 4th retained topic is refused');
    assert.equal(await retain(r, 'ret/1', 'replaced'), 0, 'replacing a retained topic is always allowed');
    assert.equal(await retain(r, 'ret/2', ''), 0, 'deleting is always allowed');
    assert.equal(await retain(r, 'ret/4', 'now fits'), 0);
    // Org B's quota is its own.
    const rb = await raw(orgB, 'other', 5);
    assert.equal(await retain(rb, 'ret/1', 'b'), 0);
    // What org A's subscribers get: exactly its three retained topics, and ret/4 was never published live while refused.
    const sub = await connect(h.tcpUrl, await issuer.token(orgA, 'reader'), { protocolVersion: 5 });
    open.push(sub);
    await sub.client.subscribeAsync('ret/#');
    const got = await sub.waitFor(3);
    assert.deepEqual(got.map((m) => `${m.topic}=${m.payload}`).sort(), ['ret/1=replaced', 'ret/3=ret/3', 'ret/4=now fits']);
  });

  it('rate - a burst beyond ORGHUB_MQTT_RATE disconnects with 0x96', async () => {
    const r = await raw(testOrg(), 'fast', 5);
    for (let i = 0; i < 200; i++) r.send({ cmd: 'publish', topic: 'fast/x', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 5);
    const d = (await r.waitFor((p) => p.cmd === 'disconnect')) as IDisconnectPacket;
    assert.equal(d.reasonCode, 0x96);
  });

  it('in-flight - QoS 1 deliveries stop at min(ORGHUB_MQTT_MAX_INFLIGHT, receive maximum) until PUBACK', async () => {
    const org = testOrg();
    const r = await raw(org, 'slow', 5, { properties: { receiveMaximum: 3 } });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'inf/#', qos: 1 }] }, 5);
    await r.waitFor((p) => p.cmd === 'suback');
    const p = await connect(h.tcpUrl, await issuer.token(org, 'p'));
    open.push(p);
    await p.client.subscribeAsync('inf/#');
    for (let i = 0; i < 10; i++) await p.client.publishAsync('inf/x', String(i), { qos: 1 });
    const pubs = () => r.packets.filter((x) => x.cmd === 'publish') as IPublishPacket[];
    // Barrier instead of a sleep: once p got all 10 the hub has routed them to r too; a PINGREQ
    // answered after that means every PUBLISH the hub was willing to send r is already in.
    const pinged = async () => {
      const n = r.packets.filter((x) => x.cmd === 'pingresp').length;
      r.send({ cmd: 'pingreq' }, 5);
      await r.waitFor(() => r.packets.filter((x) => x.cmd === 'pingresp').length > n);
    };
    await p.waitFor(10);
    await pinged();
    assert.equal(pubs().length, 3);
    r.send({ cmd: 'puback', messageId: pubs()[0].messageId }, 5);
    await r.waitFor(() => pubs().length >= 4);
    await pinged();
    assert.equal(pubs().length, 4);
    assert.deepEqual(pubs().map((x) => x.payload.toString()), ['0', '1', '2', '3']);
    const ids = new Set(pubs().map((x) => x.messageId));
    assert.equal(ids.size, 4, 'distinct packet ids');
  });
});
