import { Registry, Gauge, Counter, Histogram, collectDefaultMetrics } from 'prom-client';
import type { LatencySnapshot } from './core/latencyHistogram.ts';

/** One more figure for /metrics, read at scrape time: a gauge, or a counter over a monotonic number. */
export interface MetricSource {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  read(): number;
  /**
   * A metric split by one label with a fixed, small set of values (never an org or client id):
   * `read` is then unused and `byLabel` gives the figure per value.
   */
  labelled?: { label: string; values: readonly string[]; byLabel(): Record<string, number> };
}

/**
 * A histogram kept outside prom-client (hub/core/latencyHistogram.ts), one series per label set;
 * label values must come from a bounded set (see `orgLabeler`).
 */
export interface HistogramSource {
  name: string;
  help: string;
  type: 'histogram';
  labelNames: readonly string[];
  read(): ReadonlyArray<{ labels: Record<string, string>; snapshot: LatencySnapshot }>;
}

/** Every metric name the hub registers starts with this (process metrics included). */
export const METRIC_PREFIX = 'orghub_';

/**
 * Prometheus metrics. Hot-path figures are read from plain counters at scrape time (collect
 * callbacks) rather than incremented per message through prom-client. `extra` holds the figures of
 * the event store and of hub extensions (the MQTT bridge).
 */
export function createMetrics(
  sources: {
    connections(): number;
    fanout(): { messages: number; deliveries: number; frames: number };
    fanoutPatterns(): number;
    auditBacklog(): number;
    auditDropped(): number;
    /** Drops per org label (a bounded set of labels). */
    auditDroppedByOrg?(): Record<string, number>;
    auditDeadLettered?(): number;
  },
  extra: readonly (MetricSource | HistogramSource)[] = [],
): Registry {
  const registry = new Registry();
  // prom-client's default names already start with `process_` or `nodejs_`: the prefix is only ours.
  collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  /** A counter over a plain monotonic number: advanced by the difference at each scrape. */
  const counter = (name: string, help: string, read: () => number) => {
    let seen = 0;
    return new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const v = read();
        if (v > seen) this.inc(v - seen);
        seen = v;
      },
    });
  };
  gauge('orghub_ws_connections', 'Open WebSocket connections', sources.connections);
  gauge('orghub_fanout_patterns', 'Distinct (org, pattern) bus subscriptions held for WebSocket clients', sources.fanoutPatterns);
  counter('orghub_fanout_messages_total', 'Messages received from the bus for WebSocket fan-out', () => sources.fanout().messages);
  counter('orghub_fanout_deliveries_total', 'Messages delivered to WebSocket clients', () => sources.fanout().deliveries);
  counter('orghub_fanout_frames_total', 'Coalesced frames published to uWS topics', () => sources.fanout().frames);
  gauge('orghub_audit_backlog', 'Audit events waiting for the event store', sources.auditBacklog);
  counter('orghub_audit_dropped_total', 'Audit events dropped past the buffer bound', sources.auditDropped);
  const byOrg = sources.auditDroppedByOrg;
  if (byOrg) {
    const seen = new Map<string, number>();
    new Counter({
      name: 'orghub_audit_dropped_by_org_total',
      help: 'Audit events dropped past the buffer bounds, by org (the first 20 orgs that drop and _unauthenticated by name, later ones as other)',
      labelNames: ['org'],
      registers: [registry],
      collect() {
        for (const [org, v] of Object.entries(byOrg())) {
          const d = v - (seen.get(org) ?? 0);
          if (d > 0) this.inc({ org }, d);
          seen.set(org, v);
        }
      },
    });
  }
  if (sources.auditDeadLettered) counter('orghub_audit_dead_lettered_total', 'Audit events the event store rejected for good (invalid data): logged, not retried', sources.auditDeadLettered);
  for (const m of extra) {
    if (m.type === 'histogram') registry.registerMetric(new SnapshotHistogram(m));
    else if (m.labelled) labelled(registry, m, m.labelled);
    else (m.type === 'gauge' ? gauge : counter)(m.name, m.help, m.read);
  }
  return registry;
}

/**
 * A prom-client Histogram whose series are read from snapshots at scrape time instead of being
 * observed through prom-client on the hot path. It yields prom-client's own value shape
 * (`_bucket` with `le`, `+Inf`, `_sum`, `_count`), so the registry formats it like any histogram.
 */
class SnapshotHistogram extends Histogram<string> {
  constructor(private readonly source: HistogramSource) {
    super({ name: source.name, help: source.help, labelNames: [...source.labelNames], registers: [] });
  }

  override async get() {
    const values: { value: number; labels: Record<string, string | number>; metricName: string }[] = [];
    const name = this.source.name;
    for (const { labels, snapshot } of this.source.read()) {
      snapshot.bounds.forEach((le, i) => values.push({ value: snapshot.cumulative[i], labels: { ...labels, le }, metricName: `${name}_bucket` }));
      values.push({ value: snapshot.count, labels: { ...labels, le: '+Inf' }, metricName: `${name}_bucket` });
      values.push({ value: snapshot.sum, labels, metricName: `${name}_sum` });
      values.push({ value: snapshot.count, labels, metricName: `${name}_count` });
    }
    // prom-client's typings declare `type` as a numeric enum; at run time it is this string.
    return { name, help: this.source.help, type: 'histogram' as never, values, aggregator: 'sum' as const, collect: () => {} };
  }

  getForPromString() {
    return this.get();
  }
}

/** A gauge or counter over one bounded label (see `MetricSource.labelled`). */
function labelled(registry: Registry, m: MetricSource, l: NonNullable<MetricSource['labelled']>): void {
  const seen: Record<string, number> = {};
  const opts = { name: m.name, help: m.help, labelNames: [l.label], registers: [registry] };
  if (m.type === 'gauge') {
    new Gauge({
      ...opts,
      collect() {
        const v = l.byLabel();
        for (const k of l.values) this.set({ [l.label]: k }, v[k] ?? 0);
      },
    });
    return;
  }
  new Counter({
    ...opts,
    collect() {
      const v = l.byLabel();
      for (const k of l.values) {
        const now = v[k] ?? 0;
        const d = now - (seen[k] ?? 0);
        if (d > 0) this.inc({ [l.label]: k }, d);
        else if (seen[k] === undefined) this.inc({ [l.label]: k }, 0);
        seen[k] = now;
      }
    },
  });
}
