import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket, { type IConnectPacket } from 'mqtt-packet';
import type { MqttLimits } from './limits.ts';
import { acceptedConnack, acceptedConnackBytes, connackProperties, msUntil, willOf } from './sessionConnect.ts';

const limits = { maxInflight: 100, maxPacket: 262144 } as MqttLimits;

describe('mqtt connect', () => {
  it('token expiry - ms until exp, 0 when past, capped at the setTimeout maximum', () => {
    assert.equal(msUntil(1000, 990_500), 9500);
    assert.equal(msUntil(1000, 2_000_000), 0);
    assert.equal(msUntil(4_000_000_000, 0), 2 ** 31 - 1);
  });

  it('will - QoS 2 is kept as 1, a string payload becomes bytes, retain is a boolean', () => {
    assert.deepEqual(willOf({ topic: 'lwt/a', payload: 'bye' as unknown as Buffer, qos: 2, retain: true }), { topic: 'lwt/a', payload: Buffer.from('bye'), qos: 1, retain: true });
    assert.deepEqual(willOf({ topic: 'lwt/a', payload: Buffer.from([0]), qos: 0, retain: false }), { topic: 'lwt/a', payload: Buffer.from([0]), qos: 0, retain: false });
  });

  it('connack - MQTT 5 properties announce what the bridge supports', () => {
    assert.deepEqual(connackProperties(limits, undefined, 0, undefined), {
      receiveMaximum: 100,
      maximumPacketSize: 262144,
      topicAliasMaximum: 0,
      retainAvailable: true,
      wildcardSubscriptionAvailable: true,
      subscriptionIdentifiersAvailable: false,
      sharedSubscriptionAvailable: false,
    });
  });

  it('connack - session expiry is sent only when the granted one differs (capped); assigned id when given', () => {
    const p = connackProperties({ ...limits, maxInflight: 70000 }, 0xffffffff, 86400, 'orghub-x');
    assert.equal(p.sessionExpiryInterval, 86400);
    assert.equal('sessionExpiryInterval' in connackProperties(limits, 3600, 3600, undefined), false);
    assert.equal(p.assignedClientIdentifier, 'orghub-x');
    assert.equal(p.receiveMaximum, 65535, 'capped at the protocol maximum');
    assert.equal('sessionExpiryInterval' in connackProperties(limits, 0, 0, undefined), false);
  });

  it('connack - the cached 3.1.1 bytes are what mqtt-packet encodes, per session present; MQTT 5 has none', () => {
    const v4 = { cmd: 'connect', protocolVersion: 4 } as IConnectPacket;
    for (const present of [false, true]) {
      const bytes = acceptedConnackBytes(v4, present);
      assert.ok(bytes);
      assert.deepEqual(bytes, mqttPacket.generate(acceptedConnack(v4, present, limits, 0, undefined), { protocolVersion: 4 }));
      assert.equal(bytes[2], present ? 1 : 0, 'the session-present flag');
    }
    assert.equal(acceptedConnackBytes({ cmd: 'connect', protocolVersion: 5 } as IConnectPacket, true), undefined);
  });
});
