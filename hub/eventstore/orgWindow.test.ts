import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OrgWindows } from './orgWindow.ts';

describe('org window', () => {
  it('org window - an org alone is never held back, however much it has in flight', () => {
    // Given org a with 1000 appends in flight and no other org seen
    const w = new OrgWindows(64, 1000);
    w.submitted('a', 0);
    w.started('a', 1000);
    // Then it may start any number more
    assert.equal(w.room('a', 10), Infinity);
  });

  it('org window - while another org is active, an org may have window x weight in flight', () => {
    const w = new OrgWindows(64, 1000);
    w.submitted('a', 0);
    w.started('a', 100);
    // When org b submits
    w.submitted('b', 5);
    // Then a (weight 2) may start 128 - 100 more, b its whole window
    assert.equal(w.room('a', 10, 2), 28);
    assert.equal(w.room('b', 10, 2), 128);
    // And at weight 1 a is over its window: nothing more until some of its appends finish
    assert.equal(w.room('a', 10, 1), 0);
    w.finished('a', 50);
    assert.equal(w.room('a', 10, 1), 14);
    // A weight that is not a positive finite number counts as 1
    assert.equal(w.room('a', 10, Number.NaN), 14);
  });

  it('org window - the window lifts once the other org has been quiet for activeMs', () => {
    const w = new OrgWindows(64, 1000);
    w.submitted('a', 0);
    w.started('a', 500);
    w.submitted('b', 100);
    assert.equal(w.room('a', 1100, 1), 0);
    // 1000 ms after b's last submit, a is alone again
    assert.equal(w.room('a', 1101, 1), Infinity);
  });

  it('org window - window 0 or Infinity turns it off', () => {
    for (const n of [0, Infinity]) {
      const w = new OrgWindows(n, 1000);
      w.submitted('a', 0);
      w.submitted('b', 0);
      w.started('a', 10_000);
      assert.equal(w.enabled, false);
      assert.equal(w.room('a', 1), Infinity);
    }
  });
});
