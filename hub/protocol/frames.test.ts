import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFrame, encodeFrame, encodeMsgpack, FrameError } from './frames.ts';

const ab = (s: string) => new TextEncoder().encode(s).buffer as ArrayBuffer;
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FrameError);
    return { code: err.code, id: err.requestId };
  }
  assert.fail('expected a FrameError');
};

describe('frames', () => {
  it('frames - decodes every client op in JSON and msgpack alike', () => {
    const frames = [
      { op: 'sub', id: 1, topic: 'devices/+/t' },
      { op: 'unsub', id: 'a', topic: 'x' },
      { op: 'pub', topic: 'a/b', data: { n: 1 } },
      { op: 'cmd', id: 2, type: 'device.reboot', topic: 'devices/d1/commands', data: {}, key: 'k' },
      { op: 'auth', id: 3, token: 'x.y.z' },
      { op: 'ping' },
    ];
    for (const f of frames) {
      assert.deepEqual(decodeFrame(ab(JSON.stringify(f)), false, 'json'), f);
      const packed = encodeMsgpack(f);
      assert.deepEqual(decodeFrame(packed.buffer.slice(packed.byteOffset, packed.byteOffset + packed.byteLength) as ArrayBuffer, true, 'msgpack'), f);
    }
  });

  it('frames - bad input gets a stable code and keeps the request id when it has one', () => {
    assert.deepEqual(code(() => decodeFrame(ab('{nope'), false, 'json')), { code: 'bad_frame', id: undefined });
    assert.deepEqual(code(() => decodeFrame(ab('[1,2]'), false, 'json')), { code: 'bad_frame', id: undefined });
    assert.deepEqual(code(() => decodeFrame(ab('"str"'), false, 'json')), { code: 'bad_frame', id: undefined });
    assert.deepEqual(code(() => decodeFrame(ab('{"id":7}'), false, 'json')), { code: 'invalid', id: 7 });
    assert.deepEqual(code(() => decodeFrame(ab('{"op":"nuke","id":8}'), false, 'json')), { code: 'unknown_op', id: 8 });
    assert.deepEqual(code(() => decodeFrame(ab('{"op":"sub","id":9}'), false, 'json')), { code: 'invalid', id: 9 });
    assert.deepEqual(code(() => decodeFrame(ab('{"op":"pub","id":10,"topic":"a"}'), false, 'json')), { code: 'invalid', id: 10 });
    assert.deepEqual(code(() => decodeFrame(ab('{"op":"sub","id":11,"topic":"a","org":"other"}'), false, 'json')), { code: 'invalid', id: 11 });
    assert.deepEqual(code(() => decodeFrame(ab('{"op":"sub","id":{"x":1},"topic":"a"}'), false, 'json')), { code: 'invalid', id: undefined });
    assert.deepEqual(code(() => decodeFrame(ab('{"op":"ping"}'), true, 'json')), { code: 'bad_frame', id: undefined });
    assert.deepEqual(code(() => decodeFrame(ab('{"op":"ping"}'), false, 'msgpack')), { code: 'bad_frame', id: undefined });
    assert.deepEqual(code(() => decodeFrame(new Uint8Array([0xff, 0xfe, 0x00]).buffer as ArrayBuffer, false, 'json')), { code: 'bad_frame', id: undefined });
  });

  it('frames - __proto__ in a frame does not pollute and is refused as an unknown property', () => {
    assert.deepEqual(code(() => decodeFrame(ab('{"op":"ping","__proto__":{"polluted":1}}'), false, 'json')), { code: 'invalid', id: undefined });
    assert.equal(({} as { polluted?: number }).polluted, undefined);
  });

  it('frames - encodes server frames per subprotocol', () => {
    assert.equal(encodeFrame({ op: 'ok', id: 1 }, 'json'), '{"op":"ok","id":1}');
    assert.ok(encodeFrame({ op: 'ok', id: 1 }, 'msgpack') instanceof Uint8Array);
  });
});
