import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket, { type IConnackPacket, type IDisconnectPacket } from 'mqtt-packet';
import { createTestIssuer, type TestIssuer } from '../testing/issuer.ts';
import { freePort, startHubProcess, testOrg } from '../testing/hubProcess.ts';
import { RawClient, type MqttHub } from './mqttTestKit.ts';
import { ConnackV4, Reason } from './codes.ts';

/**
 * The MQTT return and reason codes that no other suite asserts, each received by a raw MQTT client
 * (exact packets, mqtt-packet on both sides) from a real hub process.
 */
describe('mqtt codes on the wire', () => {
  let issuer: TestIssuer;
  let h: MqttHub;
  const raws: RawClient[] = [];
  const open = async (version: 4 | 5) => {
    const r = await RawClient.open(h.mqttPort, version);
    raws.push(r);
    return r;
  };
  const connectPacket = async (version: 4 | 5, extra: Record<string, unknown> = {}) =>
    ({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: `codes-${version}-${Math.random().toString(36).slice(2)}`, clean: true, keepalive: 60, username: 'x', password: Buffer.from(await issuer.token(testOrg(), 'u')), ...extra }) as never;

  /** A hub with the bridge on a free port; a generous start deadline, as the suite runs beside others. */
  const startMqttHub = async (): Promise<MqttHub> => {
    const mqttPort = await freePort();
    const hub = await startHubProcess({ ...issuer.env, ORGHUB_MQTT_PORT: String(mqttPort) }, { timeoutMs: 45_000 });
    return { hub, mqttPort, tcpUrl: `mqtt://127.0.0.1:${mqttPort}`, wsUrl: `ws://127.0.0.1:${hub.port}/mqtt` };
  };

  before(async () => {
    issuer = await createTestIssuer();
    h = await startMqttHub();
  });
  after(async () => {
    for (const r of raws) r.socket.destroy();
    await h?.hub.stop();
  });

  it('mqtt codes - 3.1.1 CONNACK: accepted (0), no password (4), empty client id without clean session (2)', async () => {
    const ok = await open(4);
    ok.send(await connectPacket(4));
    assert.equal(((await ok.waitFor((p) => p.cmd === 'connack')) as IConnackPacket).returnCode, ConnackV4.accepted);

    const noPassword = await open(4);
    noPassword.send(await connectPacket(4, { password: undefined }));
    assert.equal(((await noPassword.waitFor((p) => p.cmd === 'connack')) as IConnackPacket).returnCode, ConnackV4.badUserNameOrPassword);
    await noPassword.closed;

    const noId = await open(4);
    // mqtt-packet refuses to build this (it is illegal in 3.1.1): build it with a clean session,
    // then clear the clean-session flag (bit 1 of the connect flags, after "MQTT" and the level).
    const bytes = Buffer.from(mqttPacket.generate(await connectPacket(4, { clientId: '' }), { protocolVersion: 4 }));
    const flags = bytes.indexOf('MQTT') + 5;
    assert.equal(bytes[flags] & 0x02, 0x02);
    bytes[flags] &= ~0x02;
    noId.socket.write(bytes);
    assert.equal(((await noId.waitFor((p) => p.cmd === 'connack')) as IConnackPacket).returnCode, ConnackV4.identifierRejected);
    await noId.closed;
  });

  it('mqtt codes - 3.1.1 CONNACK: a bad token is not authorized (5), and the same client with a good token is accepted', async () => {
    const bad = await open(4);
    bad.send(await connectPacket(4, { password: Buffer.from('not-a-token') }));
    assert.equal(((await bad.waitFor((p) => p.cmd === 'connack')) as IConnackPacket).returnCode, ConnackV4.notAuthorized);
    const good = await open(4);
    good.send(await connectPacket(4));
    assert.equal(((await good.waitFor((p) => p.cmd === 'connack')) as IConnackPacket).returnCode, ConnackV4.accepted);
  });

  it('mqtt codes - MQTT 5: a malformed packet after CONNECT gets DISCONNECT 0x81 (malformed packet)', async () => {
    const r = await open(5);
    r.send(await connectPacket(5));
    assert.equal(((await r.waitFor((p) => p.cmd === 'connack')) as IConnackPacket).reasonCode ?? 0, 0);
    // A PUBLISH header whose remaining length promises a topic length longer than the packet.
    r.socket.write(Buffer.from([0x30, 0x03, 0x00, 0x09, 0x61]));
    const d = (await r.waitFor((p) => p.cmd === 'disconnect')) as IDisconnectPacket;
    assert.equal(d.reasonCode, Reason.malformedPacket);
    await r.closed;
  });

  it('mqtt codes - MQTT 5: a hub that shuts down sends DISCONNECT 0x8B (server shutting down)', async () => {
    // Its own hub: stopping it must not disturb the other tests.
    const own = await startMqttHub();
    try {
      const r = await RawClient.open(own.mqttPort, 5);
      raws.push(r);
      r.send(await connectPacket(5));
      await r.waitFor((p) => p.cmd === 'connack');
      const stopped = own.hub.stop('SIGTERM');
      const d = (await r.waitFor((p) => p.cmd === 'disconnect', 15_000)) as IDisconnectPacket;
      assert.equal(d.reasonCode, Reason.serverShuttingDown);
      await stopped;
    } finally {
      await own.hub.stop('SIGKILL');
    }
  });
});
