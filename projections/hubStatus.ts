import pg from 'pg';
import { Gauge, type Registry } from 'prom-client';
import type { ReadinessCheck } from '../hub/http/opsApi.ts';
import { readProjectionLag, type ProjectionLag } from './status.ts';

export interface ProjectionStatusOptions {
  databaseUrl: string;
  /** ORGHUB_PROJECTION_LAG_THRESHOLD_S */
  lagThresholdS: number;
  /** ORGHUB_PROJECTION_STATUS_CACHE_MS */
  cacheMs: number;
  onError?: (err: unknown) => void;
}

export interface ProjectionStatus {
  /** `/ready` → `checks.projections`: always up (the hub works without read models), `lagging` past the threshold. */
  check: ReadinessCheck;
  /** Adds the `orghub_projection_*` gauges (label `projection`) to the hub's registry. */
  register(registry: Registry): void;
  close(): Promise<void>;
}

/**
 * The hub's view of the projector, which is a separate process: lag, applied events and dead
 * letters read from Postgres, on a one-connection pool of its own, cached `cacheMs` so `/ready`
 * and `/metrics` scrapes cost at most one small read per period.
 */
export function createProjectionStatus(opts: ProjectionStatusOptions): ProjectionStatus {
  const pool = new pg.Pool({ connectionString: opts.databaseUrl, max: 1, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 1500, query_timeout: 1000, application_name: 'orghub-hub:projection-status' });
  pool.on('error', (err) => opts.onError?.(err));
  let cached: { at: number; value: Promise<ProjectionLag[]> } | undefined;
  const read = (): Promise<ProjectionLag[]> => {
    const now = Date.now();
    if (cached && now - cached.at < opts.cacheMs) return cached.value;
    const value = readProjectionLag(pool, opts.lagThresholdS);
    cached = { at: now, value };
    value.catch((err: unknown) => {
      opts.onError?.(err);
      if (cached?.value === value) cached = undefined; // do not cache a failure
    });
    return value;
  };

  return {
    check: {
      name: 'projections',
      async check() {
        try {
          // Answer before /ready's own 1.5 s timeout would mark this check down: slow lag reads never make the hub unready.
          const lags = await Promise.race([
            read(),
            new Promise<never>((_, reject) => setTimeout(() => reject(new Error('projection status read timed out')), 1000).unref()),
          ]);
          return {
            up: true,
            detail: {
              lagging: lags.some((l) => l.lagging),
              thresholdSeconds: opts.lagThresholdS,
              projections: Object.fromEntries(lags.map((l) => [l.name, { behindEvents: l.behindEvents, behindSeconds: Math.round(l.behindSeconds * 1000) / 1000, lagging: l.lagging, deadLetters: l.deadLetters }])),
            },
          };
        } catch (err) {
          // The read side being unknown does not make the hub unready; the event store check covers Postgres.
          return { up: true, detail: { lagging: null, error: (err as Error)?.message ?? String(err) } };
        }
      },
    },
    register(registry) {
      const gauge = (name: string, help: string, pick: (l: ProjectionLag) => number) =>
        new Gauge({
          name, help, labelNames: ['projection'], registers: [registry],
          async collect() {
            this.reset();
            const lags = await read().catch(() => []);
            for (const l of lags) this.set({ projection: l.name }, pick(l));
          },
        });
      gauge('orghub_projection_lag_events', `Committed events not yet projected (counted up to a cap)`, (l) => l.behindEvents);
      gauge('orghub_projection_lag_seconds', 'Age of the oldest event not yet projected (0 when caught up)', (l) => l.behindSeconds);
      gauge('orghub_projection_events_applied', 'Events the projection has consumed (its checkpoint counter)', (l) => l.eventsApplied);
      gauge('orghub_projection_dead_letters', 'Events the projection could not apply (rows in projection_dead_letters)', (l) => l.deadLetters);
      gauge('orghub_projection_lagging', '1 when the projection is behind by more than ORGHUB_PROJECTION_LAG_THRESHOLD_S', (l) => (l.lagging ? 1 : 0));
    },
    async close() {
      await pool.end().catch(() => {});
    },
  };
}
