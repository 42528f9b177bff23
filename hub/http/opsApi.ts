import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { NOT_FOUND_BODY, readyFreshForMs } from '../ops/messages.ts';
import type { OpsSource } from '../ops/opsListener.ts';

/** A dependency that `/ready` reports by name. `detail` is shown as-is (no secrets). */
export interface ReadinessCheck {
  name: string;
  /** Reported on /ready, but "down" never makes it 503: a shared dependency whose outage one node's removal cannot help. */
  informational?: boolean;
  check(): Promise<{ up: boolean; detail?: Record<string, unknown> }>;
}

export interface ReadinessResult {
  ready: boolean;
  /** The JSON body of `/ready`. */
  body: string;
}

/**
 * Runs every check (each bounded by `timeoutMs`) and caches the answer for `ttlMs`; requests that
 * arrive while a check runs share it. So a flood of unauthenticated `/ready` requests costs one
 * check per `ttlMs`, never one per request (issue 9: a /ready flood must not slow tenants down).
 */
export function cachedReadiness(checks: readonly ReadinessCheck[], ttlMs: number, timeoutMs = 1500, onRun: () => void = () => {}): () => Promise<ReadinessResult> {
  let last: { at: number; result: ReadinessResult } | undefined;
  let running: Promise<ReadinessResult> | undefined;
  const runAll = async (): Promise<ReadinessResult> => {
    onRun();
    const results = await Promise.all(
      checks.map(async (c) => {
        try {
          const r = await Promise.race([c.check(), new Promise<{ up: boolean; detail?: Record<string, unknown> }>((resolve) => setTimeout(() => resolve({ up: false, detail: { error: 'timeout' } }), timeoutMs).unref())]);
          return [c.name, { status: r.up ? 'up' : 'down', ...r.detail }] as const;
        } catch (err) {
          return [c.name, { status: 'down', error: (err as Error).message }] as const;
        }
      }),
    );
    const ready = results.every(([, r], i) => r.status === 'up' || checks[i]!.informational);
    return { ready, body: JSON.stringify({ status: ready ? 'ready' : 'not_ready', checks: Object.fromEntries(results) }) };
  };
  return () => {
    // A failing answer is kept shorter, so recovery shows quickly (still at most 5 checks a second).
    if (last && Date.now() - last.at < readyFreshForMs(last.result.ready, ttlMs)) return Promise.resolve(last.result);
    running ??= runAll().then((result) => {
      last = { at: Date.now(), result };
      running = undefined;
      return result;
    });
    return running;
  };
}

/** What the ops endpoints answer from, on whichever thread serves them (hub/ops/opsListener.ts `OpsSource`). */
export function opsSource(checks: ReadinessCheck[], registry: Registry, readyCacheMs = 1000): OpsSource {
  const runs = new Counter({ name: 'orghub_ready_checks_total', help: 'Times /ready actually ran its checks (cached answers in between are not counted)', registers: [registry] });
  const requests = new Counter({ name: 'orghub_ready_requests_total', help: '/ready requests answered', registers: [registry] });
  return {
    readiness: cachedReadiness(checks, readyCacheMs, 1500, () => runs.inc()),
    countReadyRequests: (n) => requests.inc(n),
    metrics: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

/**
 * `/health` (process alive), and, unless the ops port serves them (`withReadyAndMetrics` false),
 * `/ready` (every dependency up, each named; cached) and `/metrics`; then the API's 404 for any
 * other path. `/health` stays here either way: it checks nothing, so it costs the tenants' loop what
 * any unknown path's 404 costs, and load balancers probe this port with it.
 */
export function mountOpsApi(app: TemplatedApp, ops: OpsSource, log: Logger, withReadyAndMetrics = true): void {
  app.get('/health', (res) => {
    res.writeHeader('content-type', 'application/json').end('{"status":"ok"}');
  });

  if (withReadyAndMetrics) {
    app.get('/ready', (res) => {
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      ops.countReadyRequests(1);
      void ops.readiness().then(({ ready, body }) => {
        if (aborted) return;
        res.cork(() => res.writeStatus(ready ? '200 OK' : '503 Service Unavailable').writeHeader('content-type', 'application/json').end(body));
      });
    });

    app.get('/metrics', (res) => {
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      ops.metrics().then(
        (text) => {
          if (!aborted) res.cork(() => res.writeHeader('content-type', ops.contentType).end(text));
        },
        (err) => {
          log.error({ err }, 'metrics failed');
          if (!aborted) res.cork(() => res.writeStatus('500 Internal Server Error').end());
        },
      );
    });
  }

  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').writeHeader('content-type', 'application/json').end(NOT_FOUND_BODY);
  });
}
