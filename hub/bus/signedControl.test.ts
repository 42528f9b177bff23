import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CONTROL_MAX_SKEW_MS, openControl, OwnFrames, signControl } from './signedControl.ts';

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

  it('signedControl - own frames are known by their signature, forgotten past the bound, and a copied signature on other bytes still counts as own (dropped, never accepted)', () => {
    const own = new OwnFrames(2);
    const mine = signControl(key, 'mqtt.takeover', payload);
    const theirs = signControl(Buffer.from('o'.repeat(32)), 'mqtt.takeover', payload);
    assert.equal(own.has(mine), false, 'nothing remembered yet');
    own.add(mine);
    assert.equal(own.has(mine), true);
    assert.equal(own.has(new Uint8Array(mine)), true, 'a copy in another buffer, as NATS delivers it');
    assert.equal(own.has(theirs), false, "another node's frame is not taken for this node's");
    const forged = Buffer.concat([mine.subarray(0, 40), Buffer.from('{"x":2}')]);
    assert.equal(own.has(forged), true);
    assert.equal(openControl(key, 'mqtt.takeover', forged), undefined, 'which the full check would have refused anyway');
    own.add(signControl(key, 'mqtt.takeover', payload, Date.now() + 1));
    own.add(signControl(key, 'mqtt.takeover', payload, Date.now() + 2));
    assert.equal(own.has(mine), false, 'forgotten past the bound');
    assert.equal(own.has(Buffer.alloc(10)), false, 'short frame');
  });
});
