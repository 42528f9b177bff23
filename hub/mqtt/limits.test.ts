import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clip, keepaliveExpired, overPacketLimit, TokenBucket } from './limits.ts';

/** A bucket on a hand-driven clock (milliseconds). */
function bucket(rate: number) {
  const clock = { t: 1000 };
  return { b: new TokenBucket(rate, () => clock.t), clock };
}

function takeAll(b: TokenBucket, max = 100_000): number {
  let n = 0;
  while (n < max && b.take()) n++;
  return n;
}

describe('mqtt limits', () => {
  it('token bucket - a fresh bucket allows a burst of exactly 2 × rate', () => {
    const { b } = bucket(10);
    assert.equal(takeAll(b), 20);
    assert.equal(b.take(), false);
  });

  it('token bucket - refills at `rate` tokens per second', () => {
    const { b, clock } = bucket(10);
    takeAll(b);
    clock.t += 100; // 1 token
    assert.equal(b.take(), true);
    assert.equal(b.take(), false);
    clock.t += 550; // 5.5 tokens
    assert.equal(takeAll(b), 5);
  });

  it('token bucket - idle time never grows the burst beyond 2 × rate', () => {
    const { b, clock } = bucket(10);
    clock.t += 100_000;
    assert.equal(takeAll(b), 20, 'a long idle period still gives one burst');
    clock.t += 60_000;
    takeAll(b, 19);
    // Draining again right after: no credit for the idle time already counted.
    assert.equal(takeAll(b), 1);
  });

  it('token bucket - rate 0 disables the limit', () => {
    const { b } = bucket(0);
    assert.equal(takeAll(b, 50_000), 50_000);
  });

  it('packet size - over the limit by declared length or by buffered bytes beyond 8 of slack', () => {
    assert.equal(overPacketLimit(4096, 0, 4096), false);
    assert.equal(overPacketLimit(4097, 0, 4096), true);
    assert.equal(overPacketLimit(10, 4104, 4096), false);
    assert.equal(overPacketLimit(10, 4105, 4096), true);
  });

  it('keepalive - expires only after 1.5 × keepalive of silence; 0 never expires', () => {
    assert.equal(keepaliveExpired(1000, 0, 1500), false);
    assert.equal(keepaliveExpired(1000, 0, 1501), true);
    assert.equal(keepaliveExpired(0, 0, 10_000_000), false);
  });

  it('clip - shortens past n chars with an ellipsis and keeps shorter strings', () => {
    assert.equal(clip(undefined), undefined);
    assert.equal(clip('a'.repeat(128)), 'a'.repeat(128));
    assert.equal(clip('a'.repeat(129)), `${'a'.repeat(128)}…`);
    assert.equal(clip('abcdef', 3), 'abc…');
  });

  it('clip - never splits a surrogate pair, escapes NUL and control characters, repairs lone surrogates', () => {
    const id = `${'a'.repeat(127)}\u{1F600}tail`;
    const c = clip(id)!;
    assert.ok(c.isWellFormed(), 'a pair cut at 128 code units would leave a lone high surrogate');
    assert.equal(c, `${'a'.repeat(127)}\u{1F600}…`);
    assert.equal(clip('bad\u0000id\n'), 'bad\\u0000id\\u000a');
    assert.equal(clip('x\ud800y'), 'x\ufffdy');
  });
});
