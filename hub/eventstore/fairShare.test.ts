import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fairShares, settleOrder, type Waiting } from './fairShare.ts';

const w = (key: string, queued: number, weight = 1): Waiting => ({ key, queued, weight });
const obj = (m: Map<string, number>) => Object.fromEntries([...m].sort(([a], [b]) => a.localeCompare(b)));
const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

describe('fair share', () => {
  it('fair share - equal weights: two flooding orgs get half each (plain round-robin)', () => {
    assert.deepEqual(obj(fairShares([w('a', 1000), w('b', 1000)], 500)), { a: 250, b: 250 });
  });

  it('fair share - weights 4 : 2 : 1 (enterprise, standard, free) split a full batch in proportion', () => {
    const m = fairShares([w('e', 1000, 4), w('s', 1000, 2), w('f', 1000, 1)], 700);
    assert.deepEqual(obj(m), { e: 400, f: 100, s: 200 });
  });

  it('fair share - what a short queue leaves goes to the others, by weight', () => {
    // Given a free org with 3 waiting beside two flooding orgs of weight 4 and 1
    const m = fairShares([w('big', 1000, 4), w('short', 3, 4), w('small', 1000, 1)], 100);
    // Then the short one is served whole and the rest of the batch is shared 4 : 1
    assert.equal(m.get('short'), 3);
    assert.equal(sum(m), 100);
    assert.ok(m.get('big')! >= 4 * m.get('small')! - 4 && m.get('big')! <= 4 * m.get('small')! + 4, JSON.stringify(obj(m)));
  });

  it('fair share - a low weight is never starved: every waiting org gets a place while places remain', () => {
    const m = fairShares([w('e', 10_000, 4), w('f1', 10_000, 1), w('f2', 10_000, 1)], 10);
    for (const k of ['e', 'f1', 'f2']) assert.ok(m.get(k)! >= 1, `${k}: ${JSON.stringify(obj(m))}`);
    assert.equal(sum(m), 10);
  });

  it('fair share - never more than the batch or than what is waiting', () => {
    assert.deepEqual(obj(fairShares([w('a', 2, 4), w('b', 1, 1)], 500)), { a: 2, b: 1 });
    for (let max = 1; max <= 40; max++) {
      const m = fairShares([w('a', 7, 3), w('b', 50, 1), w('c', 1, 2), w('d', 20, 5)], max, max);
      assert.equal(sum(m), Math.min(max, 78));
      assert.ok((m.get('a') ?? 0) <= 7 && (m.get('c') ?? 0) <= 1 && (m.get('d') ?? 0) <= 20);
    }
  });

  it('fair share - fewer places than orgs: the rotating start takes turns', () => {
    const keys = [w('a', 5), w('b', 5), w('c', 5)];
    const firsts = [0, 1, 2].map((s) => [...fairShares(keys, 1, s).keys()][0]);
    assert.deepEqual(firsts, ['a', 'b', 'c']);
  });

  it('fair share - a weight that is not a positive number counts as 1; nothing waiting gives nothing', () => {
    assert.deepEqual(obj(fairShares([w('a', 100, 0), w('b', 100, Number.NaN), w('c', 100, -3)], 30)), { a: 10, b: 10, c: 10 });
    assert.equal(fairShares([], 10).size, 0);
    assert.equal(fairShares([w('a', 5)], 0).size, 0);
  });

  it('settle order - the orgs with the fewest requests in a batch are answered first, each in batch order', () => {
    // a batch of a a b a c a b: b has 2, c 1, a 4
    assert.deepEqual(settleOrder(['a', 'a', 'b', 'a', 'c', 'a', 'b']), [4, 2, 6, 0, 1, 3, 5]);
    // equal sizes keep the order of first appearance
    assert.deepEqual(settleOrder(['x', 'y', 'x', 'y']), [0, 2, 1, 3]);
    assert.deepEqual(settleOrder([]), []);
  });
});
