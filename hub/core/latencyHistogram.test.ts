import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LatencyHistogram, orgLabeler, OTHER_ORGS } from './latencyHistogram.ts';

describe('latency histogram', () => {
  it('latency histogram - counts land in the first bound at or above the value, cumulatively', () => {
    const h = new LatencyHistogram([0.001, 0.01, 0.1]);
    for (const v of [0.0005, 0.001, 0.002, 0.05, 3]) h.observe(v);
    const s = h.snapshot();
    assert.deepEqual(s.cumulative, [2, 3, 4]);
    assert.equal(s.count, 5);
    assert.ok(Math.abs(s.sum - 3.0535) < 1e-9);
  });

  it('latency histogram - a negative value (clock skew) counts as zero', () => {
    const h = new LatencyHistogram([0.001]);
    h.observe(-2);
    assert.deepEqual(h.snapshot(), { bounds: [0.001], cumulative: [1], count: 1, sum: 0 });
  });

  it('latency histogram - bounds must ascend', () => {
    assert.throws(() => new LatencyHistogram([0.1, 0.01]), RangeError);
  });

  it('org labeler - only allow-listed orgs keep their id, the rest share _other', () => {
    const label = orgLabeler(['acme', '', 'globex']);
    assert.equal(label('acme'), 'acme');
    assert.equal(label('globex'), 'globex');
    assert.equal(label('initech'), OTHER_ORGS);
    assert.equal(label(''), OTHER_ORGS);
  });
});
