import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { jsonFrame, msgpackFrame } from './fanout.ts';
import type { BusMessage } from '../../bus/bus.ts';

const msg = (topic: string, data: string | Uint8Array, from?: string): BusMessage => ({
  org: 'o',
  topic,
  payload: typeof data === 'string' ? Buffer.from(data) : data,
  contentType: typeof data === 'string' ? 'json' : 'bytes',
  from,
  ts: 5,
  qos: 1,
});
const unpack = (b: Uint8Array) => new Packr({ useRecords: false, mapsAsObjects: true }).unpack(b);

describe('fanout frames', () => {
  it('fanout - one message is an object, several an array, and JSON payload text is embedded verbatim', () => {
    const one = jsonFrame('"devices/+/t"', [msg('devices/d1/t', '{"a": 1}', 'd1')]);
    assert.equal(one, '{"op":"msg","sub":"devices/+/t","topic":"devices/d1/t","data":{"a": 1},"from":"d1","ts":5}');
    const many = JSON.parse(jsonFrame('"#"', [msg('a', '1'), msg('b', '"x"', 'q"uote')]));
    assert.deepEqual(many, [
      { op: 'msg', sub: '#', topic: 'a', data: 1, ts: 5 },
      { op: 'msg', sub: '#', topic: 'b', data: 'x', from: 'q"uote', ts: 5 },
    ]);
  });

  it('fanout - bytes reach JSON clients as base64 and msgpack clients as binary', () => {
    const bytes = new Uint8Array([0, 255, 1]);
    assert.deepEqual(JSON.parse(jsonFrame('"a"', [msg('a', bytes)])), { op: 'msg', sub: 'a', topic: 'a', data: 'AP8B', enc: 'base64', ts: 5 });
    const m = unpack(msgpackFrame('a', [msg('a', bytes)]));
    assert.deepEqual(new Uint8Array(m.data), bytes);
  });

  it('fanout - JSON nested too deeply for msgpack still reaches msgpack clients, as JSON text', () => {
    const deep = '['.repeat(3000) + ']'.repeat(3000);
    const frames = unpack(msgpackFrame('a', [msg('a', deep), msg('a', '{"ok":true}')]));
    assert.equal(frames.length, 2);
    assert.equal(frames[0].enc, 'json');
    assert.equal(Buffer.from(frames[0].data).toString(), deep);
    assert.deepEqual(frames[1].data, { ok: true });
  });
});
