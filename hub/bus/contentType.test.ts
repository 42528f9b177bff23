import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { detectContentType } from './contentType.ts';

describe('content type', () => {
  it('content type - json only for complete UTF-8 JSON text', () => {
    assert.equal(detectContentType(Buffer.from('{"a":1}')), 'json');
    assert.equal(detectContentType(Buffer.from(' [1]')), 'json');
    assert.equal(detectContentType(Buffer.from('21.5')), 'json');
    assert.equal(detectContentType(Buffer.from('"s"')), 'json');
    assert.equal(detectContentType(Buffer.from('null')), 'json');
    assert.equal(detectContentType(Buffer.alloc(0)), 'bytes');
    assert.equal(detectContentType(Buffer.from('hello')), 'bytes');
    assert.equal(detectContentType(Buffer.from('{"a":')), 'bytes');
    assert.equal(detectContentType(Buffer.from([0x22, 0xff, 0x22])), 'bytes', 'invalid UTF-8 inside a string');
  });
});
