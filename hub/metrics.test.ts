import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics } from './metrics.ts';
import { LatencyHistogram } from './core/latencyHistogram.ts';

describe('metrics', () => {
  it('metrics - counters follow their sources across scrapes and gauges show current values', async () => {
    const stats = { messages: 0, deliveries: 0, frames: 0 };
    let dropped = 0;
    const registry = createMetrics({ connections: () => 3, fanout: () => stats, fanoutPatterns: () => 2, auditBacklog: () => 7, auditDropped: () => dropped });
    const value = async (name: string) => (await registry.getSingleMetric(name)!.get()).values[0]?.value;
    stats.deliveries = 1000;
    assert.equal(await value('orghub_fanout_deliveries_total'), 1000);
    stats.deliveries = 1500;
    dropped = 4;
    assert.equal(await value('orghub_fanout_deliveries_total'), 1500);
    assert.equal(await value('orghub_audit_dropped_total'), 4);
    assert.equal(await value('orghub_ws_connections'), 3);
    assert.equal(await value('orghub_audit_backlog'), 7);
    const text = await registry.metrics();
    assert.match(text, /# TYPE orghub_fanout_deliveries_total counter/);
    assert.match(text, /# TYPE orghub_ws_connections gauge/);
  });

  it('metrics - extra sources (event store, extensions) become gauges and counters', async () => {
    let appends = 10;
    const registry = createMetrics({ connections: () => 0, fanout: () => ({ messages: 0, deliveries: 0, frames: 0 }), fanoutPatterns: () => 0, auditBacklog: () => 0, auditDropped: () => 0 }, [
      { name: 'x_appends_total', help: 'a', type: 'counter', read: () => appends },
      { name: 'x_sessions', help: 'b', type: 'gauge', read: () => 4 },
    ]);
    const value = async (name: string) => (await registry.getSingleMetric(name)!.get()).values[0]?.value;
    assert.equal(await value('x_appends_total'), 10);
    appends = 25;
    assert.equal(await value('x_appends_total'), 25);
    assert.equal(await value('x_sessions'), 4);
    assert.match(await registry.metrics(), /# TYPE x_appends_total counter[\s\S]*# TYPE x_sessions gauge/);
  });
});

describe('metrics histograms', () => {
  it('metrics - a snapshot histogram is exposed with le buckets, +Inf, sum and count per label set', async () => {
    const h = new LatencyHistogram([0.01, 0.1]);
    h.observe(0.005);
    h.observe(0.05);
    h.observe(7);
    const registry = createMetrics({ connections: () => 0, fanout: () => ({ messages: 0, deliveries: 0, frames: 0 }), fanoutPatterns: () => 0, auditBacklog: () => 0, auditDropped: () => 0 }, [
      { name: 'orghub_x_seconds', help: 'x', type: 'histogram', labelNames: ['org'], read: () => [{ labels: { org: 'acme' }, snapshot: h.snapshot() }] },
    ]);
    const text = await registry.metrics();
    assert.match(text, /# TYPE orghub_x_seconds histogram/);
    assert.match(text, /^orghub_x_seconds_bucket\{org="acme",le="0.01"\} 1$/m);
    assert.match(text, /^orghub_x_seconds_bucket\{org="acme",le="0.1"\} 2$/m);
    assert.match(text, /^orghub_x_seconds_bucket\{org="acme",le="\+Inf"\} 3$/m);
    assert.match(text, /^orghub_x_seconds_sum\{org="acme"\} 7.055$/m);
    assert.match(text, /^orghub_x_seconds_count\{org="acme"\} 3$/m);
  });

  it('metrics - process metrics carry one orghub_ prefix, not orghub_process_process_', async () => {
    const registry = createMetrics({ connections: () => 0, fanout: () => ({ messages: 0, deliveries: 0, frames: 0 }), fanoutPatterns: () => 0, auditBacklog: () => 0, auditDropped: () => 0 });
    const text = await registry.metrics();
    assert.match(text, /^# TYPE orghub_process_cpu_user_seconds_total counter$/m);
    assert.doesNotMatch(text, /orghub_process_process_|orghub_process_nodejs_/);
  });
});
