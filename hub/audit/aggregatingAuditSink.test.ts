import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AuditSink } from './audit.ts';
import { createAggregatingAuditSink } from './aggregatingAuditSink.ts';

function collector(): AuditSink & { got: { org?: string; type: string; data: Record<string, unknown> }[] } {
  const got: { org?: string; type: string; data: Record<string, unknown> }[] = [];
  return { got, record: (org, type, data) => void got.push({ org, type, data }), stats: () => ({ backlog: 0, dropped: 0 }), close: async () => {} };
}

describe('aggregating audit sink', () => {
  it('audit - a flood of one denial becomes the first event plus one count per window', async () => {
    const inner = collector();
    const sink = createAggregatingAuditSink(inner, { windowMs: 60_000 });
    for (let i = 0; i < 10_000; i++) sink.record('a', 'limit.hit', { limit: 'rate_publish', transport: 'ws' });
    sink.record('b', 'limit.hit', { limit: 'rate_publish', transport: 'ws' });
    sink.record('a', 'session.connected', { transport: 'ws' });
    assert.equal(inner.got.length, 3, 'first of org a, first of org b, and the non-floodable event');
    await sink.close();
    assert.equal(inner.got.length, 4);
    assert.deepEqual(inner.got[3], { org: 'a', type: 'limit.hit', data: { limit: 'rate_publish', transport: 'ws', aggregated: true, count: 9_999, windowMs: 60_000 } });
  });

  it('audit - distinct topics are kept apart up to the per-org bound, then folded into one key', async () => {
    const inner = collector();
    const sink = createAggregatingAuditSink(inner, { windowMs: 60_000, perOrgKeys: 5 });
    for (let i = 0; i < 1000; i++) sink.record('a', 'publish.denied', { topic: `t/${i}`, transport: 'mqtt' });
    sink.record('b', 'publish.denied', { topic: 't/1', transport: 'mqtt' });
    assert.deepEqual(inner.got.map((e) => e.data.topic), ['t/0', 't/1', 't/2', 't/3', 't/4', 't/5', 't/1'], 'five distinct, one coarse, and org b unaffected');
    await sink.close();
    const agg = inner.got.filter((e) => e.data.aggregated);
    assert.equal(agg.length, 1);
    assert.equal(agg[0].data.count, 994);
  });
});
