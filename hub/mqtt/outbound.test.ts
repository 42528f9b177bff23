import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket, { type IPublishPacket } from 'mqtt-packet';
import { encodePublish, packetIdOffset, withPacketId, type Version } from './outbound.ts';

function parse(b: Buffer, version: Version): IPublishPacket {
  const parser = mqttPacket.parser({ protocolVersion: version });
  const got: IPublishPacket[] = [];
  parser.on('packet', (p) => got.push(p as IPublishPacket));
  parser.parse(b);
  assert.equal(got.length, 1);
  return got[0];
}

describe('mqtt outbound encoding', () => {
  for (const version of [4, 5] as const) {
    it(`packet id - offset found and patched for short and multi-byte lengths (v${version})`, () => {
      for (const size of [0, 100, 200, 20_000, 3_000_000]) {
        const topic = `t/${'x'.repeat(size % 60)}`;
        const enc = encodePublish({ topic, payload: Buffer.alloc(size, 9), retain: true }, 1, version);
        const off = packetIdOffset(enc);
        assert.equal(enc.readUInt16BE(off), 1, 'encodePublish writes id 1');
        const p = parse(withPacketId(enc, off, 0xbeef), version);
        assert.equal(p.messageId, 0xbeef);
        assert.equal(p.topic, topic);
        assert.equal(p.qos, 1);
        assert.equal(p.retain, true);
        assert.equal(p.payload.length, size);
      }
    });
  }

  it('packet id - offset = fixed header + 2-byte topic length + topic', () => {
    const enc = encodePublish({ topic: 'abc', payload: Buffer.from('p'), retain: false }, 1, 4);
    assert.equal(packetIdOffset(enc), 2 + 2 + 3);
    const big = encodePublish({ topic: 'abc', payload: Buffer.alloc(200), retain: false }, 1, 4);
    assert.equal(packetIdOffset(big), 3 + 2 + 3, 'remaining length takes 2 bytes past 127');
  });

  it('withPacketId - returns a copy and leaves the shared encoding alone', () => {
    const enc = encodePublish({ topic: 'a', payload: Buffer.from('p'), retain: false }, 1, 5);
    const off = packetIdOffset(enc);
    const copy = withPacketId(enc, off, 42);
    assert.notEqual(copy, enc);
    assert.equal(enc.readUInt16BE(off), 1);
    assert.equal(copy.readUInt16BE(off), 42);
  });

  it('encodePublish - accepts a plain Uint8Array view without copying its neighbours', () => {
    const backing = new Uint8Array([1, 2, 3, 4, 5]);
    const enc = encodePublish({ topic: 'a', payload: backing.subarray(1, 3), retain: false }, 0, 4);
    assert.deepEqual([...parse(enc, 4).payload], [2, 3]);
  });
});
