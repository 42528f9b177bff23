import { Counter, Gauge, type Registry } from 'prom-client';
import type { LimitService } from './limitService.ts';

/**
 * Limit figures on /metrics, read at scrape time from the service's plain counters (nothing is
 * incremented through prom-client on the message path). Labels are bounded: `limit` is one of
 * LIMIT_NAMES and `transport` one of ws, http, mqtt.
 */
export function registerLimitMetrics(registry: Registry, svc: LimitService): void {
  const seen = new Map<string, number>();
  new Counter({
    name: 'orghub_limit_hits_total',
    help: 'Requests, messages or connections refused by a limit, by limit and transport',
    labelNames: ['limit', 'transport'],
    registers: [registry],
    collect() {
      for (const [k, v] of svc.hits) {
        const prev = seen.get(k) ?? 0;
        if (v <= prev) continue;
        const [limit, transport] = k.split('|');
        this.inc({ limit, transport }, v - prev);
        seen.set(k, v);
      }
    },
  });
  let dropped = 0;
  new Counter({
    name: 'orghub_limit_dropped_total',
    help: 'MQTT QoS 0 messages dropped over a rate or size limit (they cannot be refused)',
    registers: [registry],
    collect() {
      if (svc.dropped > dropped) this.inc(svc.dropped - dropped);
      dropped = svc.dropped;
    },
  });
  let fallbacks = 0;
  new Counter({
    name: 'orghub_limit_fallbacks_total',
    help: 'Times Redis failed and limits fell back to local buckets and per-node caps',
    registers: [registry],
    collect() {
      if (svc.fallbacks > fallbacks) this.inc(svc.fallbacks - fallbacks);
      fallbacks = svc.fallbacks;
    },
  });
  new Gauge({
    name: 'orghub_limit_degraded',
    help: '1 while limits run on local buckets because Redis is failing, else 0',
    registers: [registry],
    collect() {
      this.set(svc.degraded ? 1 : 0);
    },
  });
}
