import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { filterRefusal, grantedQos, unsubackPacket, wantsRetained } from './sessionSubscribe.ts';

const grants = (allowed: string[]) => ({ canSubscribe: (p: string) => allowed.includes(p) });

describe('mqtt subscribe', () => {
  it('filters - shared, then grammar, then grants, then the subscription count', () => {
    const g = grants(['a/#', '$share/g/a/#', 'a b']);
    assert.equal(filterRefusal('$share/g/a/#', g, true, 0, 10), 'shared');
    assert.equal(filterRefusal('a b', g, true, 0, 10), 'invalid');
    assert.equal(filterRefusal('x/#', g, true, 0, 10), 'denied');
    assert.equal(filterRefusal('a/#', g, true, 10, 10), 'quota');
    assert.equal(filterRefusal('a/#', g, true, 9, 10), undefined);
  });

  it('filters - re-subscribing an existing filter is not limited by the count', () => {
    assert.equal(filterRefusal('a/#', grants(['a/#']), false, 10, 10), undefined);
  });

  it('retain handling - 0 always, 1 only for a new subscription, 2 never', () => {
    assert.deepEqual(
      [wantsRetained(undefined, false), wantsRetained(0, false), wantsRetained(1, true), wantsRetained(1, false), wantsRetained(2, true)],
      [true, true, true, false, false],
    );
  });

  it('qos - granted at most 1', () => {
    assert.deepEqual([grantedQos(0), grantedQos(1), grantedQos(2)], [0, 1, 1]);
  });

  it('unsuback - MQTT 5 codes per filter (0x00 or 0x11); 3.1.1 none', () => {
    assert.deepEqual(unsubackPacket(4, [true, false], 5), { cmd: 'unsuback', messageId: 4, granted: [0, 0x11] });
    assert.deepEqual(unsubackPacket(4, [true, false], 4), { cmd: 'unsuback', messageId: 4, granted: [] });
  });
});
