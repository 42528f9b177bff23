import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseRetention, planRecovery, retentionOf } from './history.ts';
import { Sequencer } from './sequencer.ts';

const m = (offset: number, epoch = 'e1') => ({ offset, epoch });

describe('history', () => {
  it('history - ORGHUB_HISTORY_NAMESPACES parses ns=size:ttlSeconds and names a bad entry', () => {
    const r = parseRetention(' chat=100:300, feed=5:1 ');
    assert.deepEqual(r.get('chat'), { size: 100, ttlMs: 300_000 });
    assert.deepEqual(r.get('feed'), { size: 5, ttlMs: 1000 });
    assert.equal(parseRetention('').size, 0);
    for (const bad of ['chat', 'chat=1', 'chat=0:5', 'a/b=1:1', 'chat=1:0']) assert.throws(() => parseRetention(bad), new RegExp(bad.replace(/[/]/g, '\\/')));
    assert.deepEqual(retentionOf('chat/r1', r), { size: 100, ttlMs: 300_000 });
    assert.equal(retentionOf('chat/+', r), undefined);
    assert.equal(retentionOf('other/x', r), undefined);
  });

  it('history - a resume is complete only in the same epoch, within retention and not ahead of the top', () => {
    assert.deepEqual(planRecovery({ offset: 10, epoch: 'e1' }, { offset: 15, epoch: 'e1' }, 3), { recovered: true, missed: 5 });
    assert.deepEqual(planRecovery({ offset: 15, epoch: 'e1' }, { offset: 15, epoch: 'e1' }, 16), { recovered: true, missed: 0 });
    assert.deepEqual(planRecovery({ offset: 10, epoch: 'e1' }, { offset: 15, epoch: 'e2' }, 1), { recovered: false });
    assert.deepEqual(planRecovery({ offset: 2, epoch: 'e1' }, { offset: 20, epoch: 'e1' }, 16), { recovered: false, missed: 18 });
    assert.deepEqual(planRecovery({ offset: 15, epoch: 'e1' }, { offset: 20, epoch: 'e1' }, 16), { recovered: true, missed: 5 });
    assert.deepEqual(planRecovery({ offset: 30, epoch: 'e1' }, { offset: 20, epoch: 'e1' }, 1), { recovered: false });
  });

  it('history - the sequencer delivers in order exactly once, holds what follows a gap and can skip it', () => {
    const s = new Sequencer<{ offset?: number; epoch?: string }>(3, 'e1');
    assert.deepEqual(s.push(m(3)), []);
    assert.deepEqual(s.push(m(4)), [m(4)]);
    assert.deepEqual(s.push(m(6)), []);
    assert.deepEqual(s.gap(), { from: 5, to: 5 });
    assert.deepEqual(s.push(m(7)), []);
    assert.deepEqual(s.push(m(5)), [m(5), m(6), m(7)]);
    assert.equal(s.gap(), undefined);
    assert.deepEqual(s.push(m(9)), []);
    assert.deepEqual(s.skipTo(8), [m(9)]);
    assert.deepEqual(s.push({}), [{}], 'a message without a position passes through');
    assert.deepEqual(s.push(m(1, 'e2')), [m(1, 'e2')], 'a new epoch is followed from its first message seen');
    assert.equal(s.epoch, 'e2');
  });
});
