import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRetained, encodeRetained, RETAINED_FORMAT, type RetainedMessage } from './retained.ts';

const msg: RetainedMessage = { topic: 'state/a', payload: Buffer.from([0, 1, 0xff, 0x7b]), contentType: 'bytes', qos: 1, from: 'u1', ts: 1700000000000 };

describe('mqtt retained codec', () => {
  it('encode - version byte, 4-byte metadata length, JSON metadata, then the payload verbatim', () => {
    const meta = '{"ct":"bytes","q":1,"f":"u1","ts":1700000000000}';
    const b = encodeRetained(msg);
    assert.equal(RETAINED_FORMAT, 1);
    assert.equal(b[0], 1);
    assert.equal(b.readUInt32BE(1), meta.length);
    assert.equal(b.subarray(5, 5 + meta.length).toString(), meta);
    assert.deepEqual([...b.subarray(5 + meta.length)], [0, 1, 0xff, 0x7b]);
    assert.equal(b.length, 5 + meta.length + 4);
  });

  it('decode - round-trips every field, with the topic given by the caller', () => {
    assert.deepEqual(decodeRetained('state/a', encodeRetained(msg)), msg);
    const json: RetainedMessage = { topic: 't', payload: Buffer.from('{"x":1}'), contentType: 'json', qos: 0, ts: 5 };
    assert.deepEqual(decodeRetained('t', encodeRetained(json)), { ...json, from: undefined });
  });

  it('decode - an empty payload survives', () => {
    const d = decodeRetained('t', encodeRetained({ ...msg, payload: Buffer.alloc(0) }));
    assert.equal(d?.payload.length, 0);
  });

  it('decode - anything not written by encodeRetained is undefined', () => {
    const good = encodeRetained(msg);
    assert.equal(decodeRetained('t', Buffer.from([1, 0, 0])), undefined, 'shorter than the header');
    assert.equal(decodeRetained('t', Buffer.concat([Buffer.from([2]), good.subarray(1)])), undefined, 'other format version');
    const long = Buffer.from(good);
    long.writeUInt32BE(good.length, 1);
    assert.equal(decodeRetained('t', long), undefined, 'metadata length past the end');
    const bad = Buffer.concat([Buffer.from([1, 0, 0, 0, 3]), Buffer.from('{x}')]);
    assert.equal(decodeRetained('t', bad), undefined, 'metadata not JSON');
    const nul = Buffer.concat([Buffer.from([1, 0, 0, 0, 4]), Buffer.from('null')]);
    assert.equal(decodeRetained('t', nul), undefined, 'metadata null');
  });

  it('decode - unknown metadata values fall back to bytes, QoS 0, no sender, ts 0', () => {
    const meta = Buffer.from('{"ct":"xml","q":2,"f":7}');
    const v = Buffer.concat([Buffer.from([1, 0, 0, 0, meta.length]), meta, Buffer.from('p')]);
    assert.deepEqual(decodeRetained('t', v), { topic: 't', payload: Buffer.from('p'), contentType: 'bytes', qos: 0, from: undefined, ts: 0 });
  });
});
