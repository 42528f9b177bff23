import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { uuidv7 } from './uuidv7.ts';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('uuidv7', () => {
  it('uuidv7 - version 7, RFC variant, and the timestamp in the first 48 bits', () => {
    const id = uuidv7(0x0123456789ab);
    assert.match(id, V7);
    assert.equal(id.slice(0, 13), '01234567-89ab');
    const now = Date.now();
    assert.equal(parseInt(uuidv7(now).replace(/-/g, '').slice(0, 12), 16), now);
  });

  it('uuidv7 - ids are unique and sort by time across milliseconds', () => {
    const ids = new Set(Array.from({ length: 20000 }, () => uuidv7()));
    assert.equal(ids.size, 20000);
    for (const id of ids) assert.match(id, V7);
    assert.ok(uuidv7(1000) < uuidv7(1001));
  });
});
