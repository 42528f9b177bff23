import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CONTROL_MAX_SKEW_MS, openControl, signControl } from './signedControl.ts';

const key = Buffer.from('k'.repeat(32));
const payload = Buffer.from('{"x":1}');

describe('signed control messages', () => {
  it('signedControl - an authentic fresh message opens to its payload', () => {
    assert.deepEqual(Buffer.from(openControl(key, 'access.revoked', signControl(key, 'access.revoked', payload))!), payload);
  });

  it('signedControl - another key, another kind, an altered byte, a stale or short frame are all refused', () => {
    const framed = signControl(key, 'access.revoked', payload);
    assert.equal(openControl(Buffer.from('x'.repeat(32)), 'access.revoked', framed), undefined);
    assert.equal(openControl(key, 'mqtt.takeover', framed), undefined, 'no replay across kinds');
    const altered = Buffer.from(framed);
    altered[altered.length - 1] ^= 1;
    assert.equal(openControl(key, 'access.revoked', altered), undefined);
    assert.equal(openControl(key, 'access.revoked', signControl(key, 'access.revoked', payload, Date.now() - CONTROL_MAX_SKEW_MS - 1000)), undefined);
    assert.equal(openControl(key, 'access.revoked', payload), undefined, 'unsigned JSON as a forger would send it');
    assert.equal(openControl(key, 'access.revoked', Buffer.alloc(0)), undefined);
  });
});
