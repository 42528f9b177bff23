import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { overlapDelivery } from './mqttFanout.ts';

describe('mqtt overlapping subscriptions', () => {
  const subs = new Map<string, 0 | 1>([['a/#', 0], ['a/+/c', 1], ['x/y', 1]]);

  it('overlap - exactly one matching filter delivers, at the highest granted QoS', () => {
    const verdicts = ['a/#', 'a/+/c'].map((p) => overlapDelivery(subs, p, 'a/b/c'));
    // "a/#" sorts before "a/+/c" ('#' is 0x23, '+' 0x2B): it delivers, at QoS 1 from "a/+/c".
    assert.deepEqual(verdicts, [1, undefined]);
  });

  it('overlap - a topic only one filter matches is delivered by it at its own QoS', () => {
    assert.equal(overlapDelivery(subs, 'a/#', 'a/b'), 0);
    assert.equal(overlapDelivery(subs, 'x/y', 'x/y'), 1);
  });

  it('overlap - a single subscription always delivers', () => {
    assert.equal(overlapDelivery(new Map([['t/#', 1]]), 't/#', 't/1'), 1);
  });
});
