import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ackPacket } from './sessionPublish.ts';

describe('mqtt publish acks', () => {
  it('ack - PUBACK for QoS 1, PUBREC for QoS 2', () => {
    assert.deepEqual(ackPacket(1, 9, 0, 5), { cmd: 'puback', messageId: 9 });
    assert.deepEqual(ackPacket(2, 9, 0, 5), { cmd: 'pubrec', messageId: 9 });
  });

  it('ack - MQTT 5 carries a non-zero reason code; 3.1.1 never carries one', () => {
    assert.deepEqual(ackPacket(1, 3, 0x87, 5), { cmd: 'puback', messageId: 3, reasonCode: 0x87 });
    assert.deepEqual(ackPacket(2, 3, 0x80, 5), { cmd: 'pubrec', messageId: 3, reasonCode: 0x80 });
    assert.deepEqual(ackPacket(1, 3, 0x87, 4), { cmd: 'puback', messageId: 3 });
    assert.deepEqual(ackPacket(2, 3, 0x87, 4), { cmd: 'pubrec', messageId: 3 });
  });
});
